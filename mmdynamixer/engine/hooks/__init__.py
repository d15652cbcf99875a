"""Hooks that the project's configs name: atomic checkpoints, checkpoint shape checks, finite losses."""
from .checkpoint import AtomicCheckpointHook, CheckpointShapeCheckHook
from .finite_loss import FiniteLossHook

__all__ = ['AtomicCheckpointHook', 'CheckpointShapeCheckHook', 'FiniteLossHook']
