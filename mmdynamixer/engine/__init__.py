"""Training-time pieces: the release's LR schedule, a finite-loss guard and the runtime fixes the tools apply."""
from .hooks import FiniteLossHook
from .runtime import prepare_runtime
from .schedulers import TimmCosineLR

__all__ = ['FiniteLossHook', 'TimmCosineLR', 'prepare_runtime']
