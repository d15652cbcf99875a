"""``dynamixer_s``, ``dynamixer_m``, ``dynamixer_l`` registered with timm, built on the same network.

The timm model has the release's state-dict layout, so ``timm.create_model('dynamixer_s',
checkpoint_path=RELEASE_CKPT)`` loads an authors' checkpoint as is (timm unwraps ``state_dict`` /
``state_dict_ema`` and strips ``module.``). ``pretrained_cfg_overlay=dict(file=...)`` also takes an
mmpretrain checkpoint of this project, mapped back by :func:`checkpoint_filter_fn`.
"""
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..checkpoints import mmpretrain_to_release, release_state_dict
from ..models.dynamixer import DynaMixerNet


def checkpoint_filter_fn(state_dict: dict, model: DynaMixerNet) -> dict:
    """Map a release or mmpretrain state dict onto the timm model's keys."""
    if any(key.startswith('backbone.') for key in state_dict):
        return mmpretrain_to_release(state_dict)
    return release_state_dict(state_dict)


def _cfg(crop_pct: float) -> dict:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=crop_pct,
                interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                first_conv='patch_embed.proj', classifier='head')


default_cfgs = generate_default_cfgs({
    'dynamixer_s': _cfg(crop_pct=0.9),
    'dynamixer_m': _cfg(crop_pct=0.9),
    'dynamixer_l': _cfg(crop_pct=0.875),
})


def _create_dynamixer(variant: str, arch: str, pretrained: bool = False, **kwargs) -> DynaMixerNet:
    return build_model_with_cfg(DynaMixerNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                arch=arch, **kwargs)


@register_model
def dynamixer_s(pretrained: bool = False, **kwargs) -> DynaMixerNet:
    """DynaMixer-S: 26.3 M parameters, 7.3 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_s', 's', pretrained, **kwargs)


@register_model
def dynamixer_m(pretrained: bool = False, **kwargs) -> DynaMixerNet:
    """DynaMixer-M: 57.1 M parameters, 17.0 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_m', 'm', pretrained, **kwargs)


@register_model
def dynamixer_l(pretrained: bool = False, **kwargs) -> DynaMixerNet:
    """DynaMixer-L: 97.8 M parameters, 27.4 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_l', 'l', pretrained, **kwargs)
