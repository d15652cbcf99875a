"""Training-time pieces: the release's LR schedule and the runtime fixes the tools apply."""
from .runtime import prepare_runtime
from .schedulers import TimmCosineLR

__all__ = ['TimmCosineLR', 'prepare_runtime']
