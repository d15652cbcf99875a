"""Weights-only loading of mmengine checkpoints on torch >= 2.6, allowed only around the loads that need it.

torch >= 2.6 loads checkpoints weights-only by default and mmengine 0.10.7 calls ``torch.load`` without
``weights_only`` (``mmengine/runner/checkpoint.py``): its checkpoints hold a ``MessageHub`` state with
``HistoryBuffer`` objects (which pickle their statistic methods through ``getattr``) and numpy arrays and
scalars, which the weights-only unpickler refuses, so ``--resume`` and ``load_from`` fail.
:func:`mmengine_checkpoint_loading` allow-lists exactly those types, and ``getattr`` restricted to HistoryBuffer's
methods, for the duration of a ``with`` block (torch's ``safe_globals``), instead of turning weights-only off or
changing torch's process-wide allow-list: ``DynaMixerRunner``'s load and resume, the backbone's ``Pretrained``
init and the tools use it; any other load in the process sees torch's allow-list as it was.
"""
import contextlib
import importlib
import pickle

import numpy as np
import torch

from ..checkpoints import WEIGHTS_ONLY_LOADING


def _history_buffer_statistic(owner, name: str):
    """Stands in for ``getattr`` while unpickling: resolves only HistoryBuffer's statistic methods."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in HistoryBuffer._statistics_methods:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'weights-only load: refusing getattr({owner!r}, {name!r}); only '
                                 f'HistoryBuffer statistics are allowed')


def _numpy_reconstructors() -> list:
    """numpy's array and scalar reconstructors under both module names a checkpoint may use: numpy 1 pickles
    ``numpy.core.multiarray``, numpy 2 ``numpy._core.multiarray`` (where ``np.core`` is deprecated)."""
    module = importlib.import_module('numpy._core.multiarray' if np.lib.NumpyVersion(np.__version__) >= '2.0.0'
                                     else 'numpy.core.multiarray')
    return [(getattr(module, name), f'numpy.{core}.multiarray.{name}')
            for name in ('_reconstruct', 'scalar') for core in ('core', '_core')]


def mmengine_checkpoint_types() -> list:
    """The allow-list entries (torch's ``safe_globals`` format) that mmengine's checkpoints need."""
    from mmengine.logging.history_buffer import HistoryBuffer

    HistoryBuffer()  # registers the default statistics
    return [HistoryBuffer, np.ndarray, np.dtype, *_numpy_reconstructors(),
            (_history_buffer_statistic, 'builtins.getattr'),
            *{type(np.dtype(code)) for code in np.typecodes['All']}]  # numpy's per-dtype classes


@contextlib.contextmanager
def mmengine_checkpoint_loading(*extra):
    """Within the block, weights-only ``torch.load`` reads mmengine checkpoints (plus the ``extra`` types); on
    exit torch's allow-list is what it was. Nests: entries already allowed are left to their owner.

    On torch < 2.6 it changes nothing: loading is not weights-only by default there, and those versions do not
    accept the ``(function, name)`` entries used here."""
    if not WEIGHTS_ONLY_LOADING:
        yield
        return
    allowed = torch.serialization.get_safe_globals()
    missing = [entry for entry in [*mmengine_checkpoint_types(), *extra] if entry not in allowed]
    with torch.serialization.safe_globals(missing):
        yield
