"""DynaMixer (ICML 2022) for the OpenMMLab toolboxes and timm.

``import mmdynamixer`` registers the ``DynaMixer`` backbone in mmpretrain's ``MODELS`` and the
``dynamixer_s/m/l`` models in timm, each when that library is installed. The model itself
(:mod:`mmdynamixer.models`) needs PyTorch only.
"""
from importlib.util import find_spec

from .models import DynaMixerNet, arch_zoo

__version__ = '0.1.0'
__all__ = ['DynaMixerNet', 'arch_zoo']

if find_spec('mmengine') is not None:
    from . import engine  # registers its train loop, LR scheduler and hooks
    # mmengine checkpoints load weights-only wherever mmdynamixer is imported (custom_imports too).
    engine.runtime.allow_mmengine_checkpoint_types()
if find_spec('mmcv') is not None:
    from .datasets.loading import CheckedLoadImageFromFile  # noqa: F401  (registers the transform)
if find_spec('mmpretrain') is not None:
    from .mmpretrain_backbone import DynaMixer  # noqa: F401
    __all__.append('DynaMixer')
if find_spec('timm') is not None:
    from . import timm_models  # noqa: F401
