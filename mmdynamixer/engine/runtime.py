"""Fixes that make mmengine 0.10.7 run on today's torch and on machines without CUDA, keep its
checkpoints intact through a kill, and catch bad configs and data before training starts.

Each fix is applied at the narrowest point that works, by :func:`prepare_runtime`, which the
tools call before building the Runner.
"""
import pickle
import warnings
from importlib.util import find_spec

import torch
import torch.distributed as dist
from mmengine.config import Config

from ..dense import check_neck_in_channels
from .checkpoint import protect_checkpoints


def _history_buffer_statistic(owner, name: str):
    """Stands in for ``getattr`` while unpickling: resolves only HistoryBuffer's statistic methods."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in HistoryBuffer._statistics_methods:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'weights-only load: refusing getattr({owner!r}, {name!r}); only '
                                 f'HistoryBuffer statistics are allowed')


def allow_mmengine_checkpoint_types() -> None:
    """torch >= 2.6 loads checkpoints weights-only by default, and mmengine 0.10.7 calls ``torch.load``
    without ``weights_only``: its checkpoints hold a ``MessageHub`` state with ``HistoryBuffer`` objects
    (which pickle their statistic methods through ``getattr``) and numpy arrays and scalars, which the
    weights-only unpickler refuses, so resume and ``load_from`` fail. Allow-list exactly those types,
    and ``getattr`` restricted to HistoryBuffer's methods, instead of turning weights-only off."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    HistoryBuffer()  # registers the default statistics
    torch.serialization.add_safe_globals([
        HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar,
        (_history_buffer_statistic, 'builtins.getattr'),
        *{type(np.dtype(code)) for code in np.typecodes['All']},  # numpy's per-dtype classes
    ])


def init_cpu_distributed(cfg: Config) -> None:
    """mmengine's pytorch launcher calls ``torch.cuda.set_device`` unconditionally and the Runner wraps
    DDP with ``device_ids=[LOCAL_RANK]``: both fail without CUDA. Without CUDA, start the process
    group with gloo ourselves (the Runner then skips its own ``init_dist``) and wrap DDP without
    device ids."""
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    # mmengine's own default wrapper, less the device ids.
    default = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper = dict(cfg.get('model_wrapper_cfg') or default)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def amp_off_without_cuda(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` asserts a CUDA device deep inside the Runner. Without CUDA, the
    recipe's mixed precision (or ``--amp``) becomes float32 training, with a warning."""
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        warnings.warn('optim_wrapper.type=AmpOptimWrapper (mixed precision) needs CUDA and none is available: '
                      'training in float32 with OptimWrapper instead')
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)
        wrapper['type'] = 'OptimWrapper'


def _check_datasets(cfg: Config) -> None:
    """Clear errors for image folders that cannot give samples and for skipping images at test time
    (mmpretrain's folder datasets; the mmdet and mmseg datasets read annotation files)."""
    if find_spec('mmpretrain') is None:
        return
    from ..datasets.checks import check_image_folders_when_scanned, check_unreadable_policies

    check_image_folders_when_scanned()
    check_unreadable_policies(cfg)


def prepare_runtime(cfg: Config, launcher: str) -> None:
    """Apply the fixes a Runner built from ``cfg`` with ``launcher`` needs on this machine."""
    allow_mmengine_checkpoint_types()
    protect_checkpoints(cfg)  # atomic saves, no silent fresh start on --resume, shape mismatches fail
    _check_datasets(cfg)
    check_neck_in_channels(cfg)  # before the Runner: a mismatch would otherwise fail in the first forward
    amp_off_without_cuda(cfg)
    if launcher != 'none' and not torch.cuda.is_available():
        if launcher == 'pytorch':
            init_cpu_distributed(cfg)
        else:
            raise RuntimeError(f'launcher={launcher!r} without CUDA is not supported; use the pytorch launcher '
                               f'(tools/dist_train.sh), which falls back to gloo on CPU')
