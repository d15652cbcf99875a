"""DynaMixer (ICML 2022) for the OpenMMLab toolboxes and timm.

``import mmdynamixer`` (what ``custom_imports=dict(imports=['mmdynamixer'])`` does) registers, for each library
that is installed: the ``DynaMixer`` backbone in mmpretrain's ``MODELS``, the runner, loop, hooks and scheduler
in mmengine's registries, the checked datasets and transforms, ``StrideFPNHead`` in mmseg's ``MODELS``, and the
``dynamixer_s/m/l`` models in timm. Each library's registrations are imported when that library is
(:mod:`mmdynamixer.registrations`), so the import itself costs torch alone. The model itself
(:mod:`mmdynamixer.models`) needs PyTorch only.
"""
from .models import DynaMixerNet, arch_zoo
from .registrations import register_with_installed_libraries

__version__ = '0.1.0'
__all__ = ['DynaMixerNet', 'arch_zoo']

register_with_installed_libraries()


def __getattr__(name: str):
    """``mmdynamixer.DynaMixer``, the mmpretrain backbone, imported (with mmpretrain) when first asked for."""
    if name == 'DynaMixer':
        from .integrations.mmpretrain import DynaMixer
        return DynaMixer
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
