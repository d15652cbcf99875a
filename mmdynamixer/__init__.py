"""DynaMixer (ICML 2022) for the OpenMMLab toolboxes and timm.

``import mmdynamixer`` (what ``custom_imports=dict(imports=['mmdynamixer'])`` does) registers, for each library
that is installed: the ``DynaMixer`` backbone in mmpretrain's ``MODELS``, the runner, loop, hooks and scheduler
in mmengine's registries, the checked datasets and transforms, ``StrideFPNHead`` in mmseg's ``MODELS``, and the
``dynamixer_s/m/l`` models in timm. Each library's registrations are imported when that library is
(:mod:`mmdynamixer.registrations`), so the import itself costs torch alone. The model itself
(:mod:`mmdynamixer.models`) needs PyTorch only.
"""
from pathlib import Path

from .models import DynaMixerNet, arch_zoo
from .registrations import register_with_installed_libraries

__version__ = '0.1.0'
__all__ = ['DynaMixerNet', 'arch_zoo', 'config_file']

register_with_installed_libraries()


def config_file(name: str) -> str:
    """Absolute path of one of our configs, ``name`` relative to ``configs/``
    (``'dynamixer/dynamixer-s_8xb256_in1k.py'``), from an installed package (``mmdynamixer/.mim/configs``) or a
    source checkout. What a user's config inherits
    through: ``_base_ = [__import__('mmdynamixer').config_file('dynamixer/dynamixer-s_8xb256_in1k.py')]``
    (mmengine's ``package::path`` form resolves only OpenMMLab's own packages)."""
    package = Path(__file__).resolve().parent
    roots = (package / '.mim' / 'configs', package.parent / 'configs')
    for root in roots:
        if (root / name).is_file():
            return str(root / name)
    found = sorted({str(p.relative_to(root)) for root in roots if root.is_dir() for p in root.glob('dynamixer/*.py')})
    raise FileNotFoundError(f'mmdynamixer has no config {name!r}; its configs: {found}')


def __getattr__(name: str):
    """``mmdynamixer.DynaMixer``, the mmpretrain backbone, imported (with mmpretrain) when first asked for."""
    if name == 'DynaMixer':
        from .integrations.mmpretrain import DynaMixer
        return DynaMixer
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
