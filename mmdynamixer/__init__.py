"""DynaMixer (ICML 2022) for the OpenMMLab toolboxes and timm.

``import mmdynamixer`` (what ``custom_imports=dict(imports=['mmdynamixer'])`` does) registers, for each library
that is installed: the ``DynaMixer`` backbone in mmpretrain's ``MODELS``, the runner, loop, hooks and scheduler
in mmengine's registries, the checked datasets and transforms, ``StrideFPNHead`` in mmseg's ``MODELS``, and the
``dynamixer_s/m/l`` models in timm. The model itself (:mod:`mmdynamixer.models`) needs PyTorch only.
"""
from importlib.util import find_spec

from .models import DynaMixerNet, arch_zoo

__version__ = '0.1.0'
__all__ = ['DynaMixerNet', 'arch_zoo']

if find_spec('mmengine') is not None:
    from . import engine  # noqa: F401
if find_spec('mmpretrain') is not None:
    from . import datasets  # noqa: F401
    from .integrations.mmpretrain import DynaMixer  # noqa: F401
    __all__.append('DynaMixer')
if find_spec('mmseg') is not None:
    from .integrations import mmseg  # noqa: F401
if find_spec('timm') is not None:
    from .integrations import timm  # noqa: F401
