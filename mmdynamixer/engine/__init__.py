"""Training-time pieces: the release's LR schedule, a finite-loss guard, a loop that resumes exactly, safe
checkpoints and the runtime fixes the tools apply."""
from .checkpoint import CheckpointShapeCheckHook
from .hooks import FiniteLossHook
from .resume import ResumableEpochBasedTrainLoop
from .runtime import prepare_runtime
from .schedulers import TimmCosineLR

__all__ = ['CheckpointShapeCheckHook', 'FiniteLossHook', 'ResumableEpochBasedTrainLoop', 'TimmCosineLR',
           'prepare_runtime']
