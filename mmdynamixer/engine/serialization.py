"""Weights-only loading of mmengine checkpoints on torch >= 2.6, registered when ``mmdynamixer`` is imported.

torch >= 2.6 loads checkpoints weights-only by default and mmengine 0.10.7 calls ``torch.load`` without
``weights_only`` (``mmengine/runner/checkpoint.py``): its checkpoints hold a ``MessageHub`` state with
``HistoryBuffer`` objects (which pickle their statistic methods through ``getattr``) and numpy arrays and
scalars, which the weights-only unpickler refuses, so ``--resume`` and ``load_from`` fail. torch's own extension
point, ``torch.serialization.add_safe_globals``, allow-lists exactly those types, and ``getattr`` restricted to
HistoryBuffer's methods, instead of turning weights-only off for every load.
"""
import importlib
import pickle

import numpy as np
import torch
from torch.torch_version import TorchVersion


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


def allow_mmengine_checkpoint_types() -> None:
    """Allow-list the types of mmengine's checkpoints for weights-only loading. Idempotent.

    Needs torch >= 2.6 (the ``openmmlab`` extra's floor): earlier versions neither load weights-only by default
    nor accept the ``(function, name)`` entries used here, and registering them there breaks every later
    weights-only load in the process. Does nothing on those versions."""
    if torch.__version__ < TorchVersion('2.6'):
        return
    from mmengine.logging.history_buffer import HistoryBuffer

    HistoryBuffer()  # registers the default statistics
    torch.serialization.add_safe_globals([
        HistoryBuffer, np.ndarray, np.dtype, *_numpy_reconstructors(),
        (_history_buffer_statistic, 'builtins.getattr'),
        *{type(np.dtype(code)) for code in np.typecodes['All']},  # numpy's per-dtype classes
    ])
