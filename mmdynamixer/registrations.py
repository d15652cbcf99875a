"""What ``import mmdynamixer`` registers in which library, and when: each library's registrations are imported
right after the library itself has been imported (at once if it already has been), so that ``import mmdynamixer``
costs torch alone until a toolbox is used, and a process that never uses mmdet or mmseg never imports them.

A process that builds from a config always finds its registrations in place: mmengine imports a toolbox's registry
(``<scope>.registry``) before it looks up a scoped type such as ``mmpretrain.DynaMixer``, and that import is what
runs the registrations.
"""
import importlib
import importlib.abc
import sys
from importlib.util import find_spec
from typing import Dict, Optional, Sequence, Tuple

# library -> our modules that register into it, imported in this order once the library's own import is complete.
REGISTRATIONS: Dict[str, Tuple[str, ...]] = {
    'mmengine': ('mmdynamixer.engine',),  # the runner, loop, hooks, scheduler, optimizer constructor, file backend
    'mmpretrain': ('mmdynamixer.datasets', 'mmdynamixer.integrations.mmpretrain'),  # checked data, the backbone
    'mmseg': ('mmdynamixer.integrations.mmseg',),  # StrideFPNHead
    'timm': ('mmdynamixer.integrations.timm',),  # dynamixer_s/m/l
}


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        importlib.import_module(module)


class _CallbackLoader(importlib.abc.Loader):
    """The library's own loader, with our registrations run once the library's module has executed. The module
    gets its own loader back before it executes, so nothing of it shows this wrapper."""

    def __init__(self, loader: importlib.abc.Loader, modules: Sequence[str]):
        self.loader, self.modules = loader, modules

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _import_all(self.modules)


class RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a pending library, it takes the spec the other finders give and has the library's
    loader run our registrations after the library's import. Leaves ``sys.meta_path`` once nothing is pending."""

    def __init__(self, pending: Dict[str, Tuple[str, ...]]):
        self.pending = dict(pending)

    def find_spec(self, fullname: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        modules = self.pending.pop(fullname, None)
        if modules is None:
            return None
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _CallbackLoader(spec.loader, modules)
                return spec
        return None


def register_with_installed_libraries() -> None:
    """Register now in each installed library that is already imported; in the others, when they are imported.
    The hook goes in first: registering in one library may import another (mmseg's models import mmpretrain)."""
    # A None entry in sys.modules is an import blocked on purpose: neither imported nor to be registered later.
    imported = [library for library in REGISTRATIONS if sys.modules.get(library) is not None]
    pending = {library: modules for library, modules in REGISTRATIONS.items()
               if library not in imported and find_spec(library) is not None}
    if pending:
        sys.meta_path.insert(0, RegisterAfterImport(pending))
    for library in imported:
        _import_all(REGISTRATIONS[library])
