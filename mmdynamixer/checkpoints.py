"""Checkpoint conversion between the authors' release (timm-style) and mmpretrain's layout."""
import re
from collections import OrderedDict
from typing import Mapping

import torch

# Every parameter name of the release (``models/vision_model.py``, ``models/dynamixer.py``).
_LAYER = r'network\.\d+\.\d+\.'
RELEASE_KEY = re.compile(
    r'^(patch_embed\.proj'
    rf'|{_LAYER}(norm1|norm2|attn\.mlp_c|attn\.proj|attn\.reweight\.fc[12]|mlp\.fc[12]'
    r'|attn\.mix_[hw]\.(compress|generate|out))'
    r'|network\.\d+\.proj'
    r'|norm|head)\.(weight|bias)$')


def release_state_dict(checkpoint: Mapping, use_ema: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict inside a release checkpoint: ``state_dict``, ``state_dict_ema`` (``use_ema``),
    ``model`` or a bare dict, with ``module.`` prefixes removed."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'Expected a checkpoint dict, got {type(checkpoint).__name__}')
    if use_ema:
        if 'state_dict_ema' not in checkpoint:
            raise KeyError(f'use_ema: the checkpoint has no state_dict_ema; its top-level keys are '
                           f'{sorted(checkpoint)[:10]}')
        state_dict = checkpoint['state_dict_ema']
    else:
        state_dict = next((checkpoint[k] for k in ('state_dict', 'model') if k in checkpoint), checkpoint)
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state_dict.items())


def release_to_mmpretrain(state_dict: Mapping) -> 'OrderedDict[str, torch.Tensor]':
    """Map release keys to an mmpretrain ``ImageClassifier`` (backbone ``DynaMixer``, head ``LinearClsHead``).

    Raises ``KeyError`` naming the first key that is not a DynaMixer release parameter."""
    if 'patch_embed.proj.weight' not in state_dict:
        raise KeyError(f'Not a DynaMixer release checkpoint: no patch_embed.proj.weight among its '
                       f'{len(state_dict)} keys (first: {list(state_dict)[:5]})')
    converted = OrderedDict()
    for key, value in state_dict.items():
        if not RELEASE_KEY.match(key):
            raise KeyError(f'Cannot map {key!r}: not a parameter of a DynaMixer release checkpoint '
                           f'(expected patch_embed.*, network.<k>.*, norm.*, head.*)')
        converted[f'head.fc.{key[5:]}' if key.startswith('head.') else f'backbone.{key}'] = value
    return converted


def mmpretrain_to_release(state_dict: Mapping) -> 'OrderedDict[str, torch.Tensor]':
    """Inverse of :func:`release_to_mmpretrain` (for loading this project's checkpoints into timm)."""
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head.fc.'):
            converted[f'head.{key[8:]}'] = value
        elif key.startswith('backbone.'):
            converted[key[9:]] = value
        else:
            raise KeyError(f'Cannot map {key!r}: expected backbone.* or head.fc.* keys of a DynaMixer classifier')
    return converted
