"""Checkpoint files a user hands us, conversion between the authors' release (timm-style) and mmpretrain's
layout, and resampling of the ``generate`` layers to another input size."""
import argparse
import contextlib
import math
import os
import re
import zipfile
from collections import OrderedDict
from typing import Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch.torch_version import TorchVersion

# torch >= 2.6 loads weights-only by default, through the allow-list (torch.serialization.safe_globals) used here.
# Older torch loads pickles in full by default and lacks that API: there checkpoints load in full, as mmengine does.
WEIGHTS_ONLY_LOADING = TorchVersion(torch.__version__) >= '2.6'

# Every parameter name of the release (``models/vision_model.py``, ``models/dynamixer.py``).
_LAYER = r'network\.\d+\.\d+\.'
RELEASE_KEY = re.compile(
    r'^(patch_embed\.proj'
    rf'|{_LAYER}(norm1|norm2|attn\.mlp_c|attn\.proj|attn\.reweight\.fc[12]|mlp\.fc[12]'
    r'|attn\.mix_[hw]\.(compress|generate|out))'
    r'|network\.\d+\.proj'
    r'|norm|head)\.(weight|bias)$')

EXPECTED_FILE = 'a PyTorch checkpoint written by torch.save (a zip archive holding data.pkl, or a legacy pickle)'
# torch.save's legacy (non-zip) format starts with its magic number pickled with protocol 2.
_LEGACY_HEADER = b'\x80\x02\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')
_ZIP_HEADER = b'PK\x03\x04'


def check_checkpoint_file(path: Union[str, os.PathLike]) -> None:
    """Raise unless ``path`` is a complete torch.save file, without unpickling it: FileNotFoundError when it does
    not exist, ValueError naming the file and what it looks like instead (another format, a truncated download)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        where = '' if os.path.isabs(path) else f' (looked for {os.path.abspath(path)})'
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist{where}')
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_HEADER))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name == 'data.pkl' or name.endswith('/data.pkl') for name in archive.namelist()):
                return
        raise ValueError(f'{path} is a zip archive without data.pkl, not {EXPECTED_FILE}')
    if head.startswith(_ZIP_HEADER):
        raise ValueError(f'{path} ({os.path.getsize(path)} bytes) starts like a torch.save zip archive but its end '
                         f'(the zip directory) is missing: a truncated download or an interrupted save? Expected '
                         f'{EXPECTED_FILE}')
    if head != _LEGACY_HEADER:
        raise ValueError(f'{path} ({os.path.getsize(path)} bytes, starting {head[:8]!r}) is not {EXPECTED_FILE}')


def refused_global(error: BaseException) -> Optional[str]:
    """The line of a weights-only ``torch.load`` error that names the global it refused (the file reads but holds
    an object other than tensors and plain data), or None: the file itself could not be read (damaged)."""
    refused = [line.strip() for line in str(error).splitlines() if 'Unsupported global' in line]
    return refused[0] if refused else None


def read_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Load a checkpoint file on the CPU, weights-only on torch >= 2.6 (the release's ``argparse.Namespace`` args
    allowed), after :func:`check_checkpoint_file`. Errors name the file and say what was expected."""
    check_checkpoint_file(path)
    try:
        # timm's train.py saves its args (argparse.Namespace); allowed for this load only
        allowed = (torch.serialization.safe_globals([argparse.Namespace]) if WEIGHTS_ONLY_LOADING
                   else contextlib.nullcontext())
        with allowed:
            checkpoint = torch.load(path, map_location='cpu', weights_only=WEIGHTS_ONLY_LOADING)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        lines = str(error).strip().splitlines()
        refused = refused_global(error)
        if refused:
            raise ValueError(f'{os.fspath(path)} holds objects other than tensors and plain data, which are not '
                             f'unpickled for safety (a checkpoint needs none): {refused}') from error
        raise ValueError(f'Cannot read {os.fspath(path)} (truncated or damaged?) as {EXPECTED_FILE}: '
                         f'{type(error).__name__}{": " + lines[0] if lines else ""}') from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{os.fspath(path)} holds a {type(checkpoint).__name__}, not a checkpoint: expected a dict '
                         f'of tensors, or a dict with one under state_dict / state_dict_ema / model')
    return checkpoint


def release_state_dict(checkpoint: Mapping, use_ema: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict inside a release checkpoint: ``state_dict``, ``state_dict_ema`` (``use_ema``),
    ``model`` or a bare dict, with ``module.`` prefixes removed."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'Expected a checkpoint dict, got {type(checkpoint).__name__}')
    if use_ema:
        if 'state_dict_ema' not in checkpoint:
            raise ValueError(f'use_ema: the checkpoint has no state_dict_ema; its top-level keys are '
                             f'{sorted(checkpoint)[:10]}')
        state_dict = checkpoint['state_dict_ema']
    else:
        state_dict = next((checkpoint[k] for k in ('state_dict', 'model') if k in checkpoint), checkpoint)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f'Expected the checkpoint\'s state dict to be a dict of tensors, got a '
                         f'{type(state_dict).__name__}')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state_dict.items())


def release_to_mmpretrain(state_dict: Mapping) -> 'OrderedDict[str, torch.Tensor]':
    """Map release keys to an mmpretrain ``ImageClassifier`` (backbone ``DynaMixer``, head ``LinearClsHead``).

    Raises ``ValueError`` naming the first key that is not a DynaMixer release parameter."""
    if 'patch_embed.proj.weight' not in state_dict:
        raise ValueError(f'Not a DynaMixer release checkpoint: no patch_embed.proj.weight among its '
                         f'{len(state_dict)} keys (first: {list(state_dict)[:5]})')
    converted = OrderedDict()
    for key, value in state_dict.items():
        if not RELEASE_KEY.match(key):
            raise ValueError(f'Cannot map {key!r}: not a parameter of a DynaMixer release checkpoint '
                             f'(expected patch_embed.*, network.<k>.*, norm.*, head.*)')
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'{key!r} holds a {type(value).__name__}, expected a tensor')
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
            raise ValueError(f'Cannot map {key!r}: expected backbone.* or head.fc.* keys of a DynaMixer classifier')
    return converted


_GENERATE_KEY = re.compile(r'^(?P<prefix>.*?)network\.(?P<entry>\d+)\.\d+\.attn\.mix_[hw]\.generate\.(weight|bias)$')


def generate_token_counts(state_dict: Mapping, image_size: int) -> 'OrderedDict[int, int]':
    """Tokens per side at each stage (``network.<k>`` entry holding layers) for ``image_size``-pixel square
    images: the patch size and each transition's stride (its conv's kernel) are read from the state dict, and
    every map's side is rounded up, as the model pads it. Keys may carry a prefix (``backbone.``)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f'image_size={image_size!r}: expected a positive int (pixels per side)')
    entries = sorted({int(m['entry']) for m in map(_GENERATE_KEY.match, state_dict) if m})
    if not entries:
        raise ValueError(f'No DynaMixer generate layers (network.<k>.<j>.attn.mix_h.generate.weight) among the '
                         f'{len(state_dict)} keys (first: {list(state_dict)[:5]})')
    prefix = _GENERATE_KEY.match(next(k for k in state_dict if _GENERATE_KEY.match(k)))['prefix']
    if f'{prefix}patch_embed.proj.weight' not in state_dict:
        raise ValueError(f'No {prefix}patch_embed.proj.weight: cannot tell the patch size')
    stride = state_dict[f'{prefix}patch_embed.proj.weight'].shape[-1]
    counts = OrderedDict()
    for entry in range(entries[-1] + 1):
        transition = state_dict.get(f'{prefix}network.{entry}.proj.weight')
        if transition is not None:
            stride *= transition.shape[-1]
        elif entry in entries:
            counts[entry] = -(-image_size // stride)
    return counts


def resample_generate(state_dict: Mapping, image_size: int) -> 'OrderedDict[str, torch.Tensor]':
    """Adapt every ``generate`` layer to the token grid of ``image_size``-pixel images, as ViTs resample their
    position embeddings; every other tensor is kept as it is.

    ``generate`` maps a window's L x d compressed tokens to L x L mixing logits: its weight, viewed as
    (L_src, L_dst, L_in, d) (the logit of source token i for destination j reads input token k's features), is
    interpolated linearly over its three token axes to L', its bias (L_src, L_dst) over its two, and the weight is
    scaled by L / L' so that a logit, a sum over L' input tokens instead of L, keeps its magnitude. The model
    built with ``resolutions`` set to the new counts (:func:`generate_token_counts`) then mixes each row and
    column of the new grid in one window instead of padded windows of L."""
    counts = generate_token_counts(state_dict, image_size)
    resampled = OrderedDict()
    for key, value in state_dict.items():
        match = _GENERATE_KEY.match(key)
        if match is None:
            resampled[key] = value
            continue
        new_len = counts[int(match['entry'])]
        length = math.isqrt(value.shape[0])
        if length * length != value.shape[0] or (value.dim() == 2 and value.shape[1] % length):
            raise ValueError(f'{key} has shape {tuple(value.shape)}: a generate layer has L*L outputs and L*d '
                             f'inputs')
        grid = value.detach().to(torch.float64)
        if value.dim() == 2:  # (L_src, L_dst, L_in, d) -> (1, d, L_src, L_dst, L_in)
            grid = grid.view(length, length, length, -1).permute(3, 0, 1, 2)[None]
            grid = F.interpolate(grid, size=(new_len,) * 3, mode='trilinear', align_corners=False)
            grid = (grid * (length / new_len))[0].permute(1, 2, 3, 0).reshape(new_len * new_len, -1)
        else:
            grid = grid.view(1, 1, length, length)
            grid = F.interpolate(grid, size=(new_len,) * 2, mode='bilinear', align_corners=False).reshape(-1)
        resampled[key] = grid.to(value.dtype)
    return resampled
