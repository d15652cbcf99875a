"""What the project's configs name for training, registered in mmengine's registries on import: the runner
(``runner_type``), the exactly resuming loop (``train_cfg.type``), the hooks (compiled layers among them), the
release's LR schedule, the optimizer constructor that freezes named parameters, the atomic file backend; plus the
context in which mmengine checkpoints load weights-only."""
from .checkpoint_files import AtomicLocalBackend
from .hooks import AtomicCheckpointHook, CheckpointShapeCheckHook, CompileLayersHook, FiniteLossHook
from .loops import ResumableEpochBasedTrainLoop
from .optim_constructors import FrozenParamsOptimWrapperConstructor
from .runner import DynaMixerRunner
from .schedulers import TimmCosineLR
from .serialization import mmengine_checkpoint_loading

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointShapeCheckHook', 'CompileLayersHook',
           'DynaMixerRunner', 'FiniteLossHook', 'FrozenParamsOptimWrapperConstructor', 'ResumableEpochBasedTrainLoop',
           'TimmCosineLR', 'mmengine_checkpoint_loading']
