"""``dynamixer_s``, ``dynamixer_m``, ``dynamixer_l`` registered with timm, built on the same network.

The timm model has the release's state-dict layout, so ``timm.create_model('dynamixer_s',
checkpoint_path=RELEASE_CKPT)`` loads an authors' checkpoint as is (timm unwraps ``state_dict`` /
``state_dict_ema`` and strips ``module.``). ``pretrained_cfg_overlay=dict(file=...)`` also takes an
mmpretrain checkpoint of this project, mapped back by :func:`checkpoint_filter_fn`.

timm's model API works as on timm's own models: ``features_only=True`` (with ``out_indices``, default all
four stages) wraps the model in timm's ``FeatureGetterNet`` over :meth:`~DynaMixerNet.forward_intermediates`;
``num_classes``, ``global_pool`` ('avg' or ''), ``drop_path_rate``, ``in_chans`` are model arguments.
"""
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models import register_notrace_function, register_notrace_module

from ..checkpoints import mmpretrain_to_release, release_state_dict
from ..models.block import DynaMixerBlock
from ..models.dynamixer import DynaMixerNet
from ..ops.onednn_linear import linear, linear_gelu

# timm's torch.fx tracer (feature extraction, ``feature_cls='fx'``) keeps these as calls: the block chooses its
# fast path by the map's size and the linears their kernel when the graph runs, so an fx graph computes what
# the eager model does, bit for bit. Plain torch.fx traces through them, into the general windowed path.
register_notrace_module(DynaMixerBlock)
register_notrace_function(linear)
register_notrace_function(linear_gelu)


class TimmDynaMixer(DynaMixerNet):
    """:class:`~mmdynamixer.models.DynaMixerNet` with timm's ``forward_features``: the last stage's normed
    map, (B, num_features, H/14, W/14), instead of the tuple of ``out_indices`` maps that OpenMMLab's backbone
    returns; :meth:`forward_head` reads it."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: DynaMixerNet) -> dict:
    """Map a release or mmpretrain state dict onto the timm model's keys."""
    if any(key.startswith('backbone.') for key in state_dict):
        return mmpretrain_to_release(state_dict)
    return release_state_dict(state_dict)


def _cfg(crop_pct: float) -> dict:
    # No weights were released (url empty): license and hf_hub_id would describe weights, so they are absent.
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(16, 16), crop_pct=crop_pct,
                crop_mode='center', interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                first_conv='patch_embed.proj', classifier='head', paper_ids='arXiv:2201.12083',
                paper_name='DynaMixer: A Vision MLP Architecture with Dynamic Mixing',
                origin_url='https://github.com/ziyuwwang/DynaMixer')


default_cfgs = generate_default_cfgs({
    'dynamixer_s': _cfg(crop_pct=0.9),
    'dynamixer_m': _cfg(crop_pct=0.9),
    'dynamixer_l': _cfg(crop_pct=0.875),
})


def _create_dynamixer(variant: str, arch: str, pretrained: bool = False, **kwargs) -> TimmDynaMixer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(TimmDynaMixer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(out_indices=out_indices, feature_cls='getter'), arch=arch, **kwargs)


@register_model
def dynamixer_s(pretrained: bool = False, **kwargs) -> TimmDynaMixer:
    """DynaMixer-S: 26.3 M parameters, 7.3 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_s', 's', pretrained, **kwargs)


@register_model
def dynamixer_m(pretrained: bool = False, **kwargs) -> TimmDynaMixer:
    """DynaMixer-M: 57.1 M parameters, 17.0 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_m', 'm', pretrained, **kwargs)


@register_model
def dynamixer_l(pretrained: bool = False, **kwargs) -> TimmDynaMixer:
    """DynaMixer-L: 97.8 M parameters, 27.4 GFLOPs at 224."""
    return _create_dynamixer('dynamixer_l', 'l', pretrained, **kwargs)
