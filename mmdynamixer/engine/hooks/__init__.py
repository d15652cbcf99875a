"""Hooks that the project's configs name: atomic checkpoints, checkpoint shape checks, finite losses, compiled
layers."""
from .checkpoint import AtomicCheckpointHook, CheckpointShapeCheckHook
from .compile import CompileLayersHook
from .finite_loss import FiniteLossHook

__all__ = ['AtomicCheckpointHook', 'CheckpointShapeCheckHook', 'CompileLayersHook', 'FiniteLossHook']
