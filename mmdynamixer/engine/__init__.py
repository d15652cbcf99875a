"""What the project's configs name for training, registered in mmengine's registries on import: the runner
(``runner_type``), the exactly resuming loop (``train_cfg.type``), the hooks, the release's LR schedule, the
optimizer constructor that freezes named parameters, the atomic file backend; plus weights-only loading of
mmengine checkpoints."""
from .checkpoint_files import AtomicLocalBackend
from .hooks import AtomicCheckpointHook, CheckpointShapeCheckHook, FiniteLossHook
from .loops import ResumableEpochBasedTrainLoop
from .optim_constructors import FrozenParamsOptimWrapperConstructor
from .runner import DynaMixerRunner
from .schedulers import TimmCosineLR
from .serialization import allow_mmengine_checkpoint_types

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointShapeCheckHook', 'DynaMixerRunner',
           'FiniteLossHook', 'FrozenParamsOptimWrapperConstructor', 'ResumableEpochBasedTrainLoop', 'TimmCosineLR',
           'allow_mmengine_checkpoint_types']
