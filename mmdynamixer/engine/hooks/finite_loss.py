"""Hooks that stop a run loudly instead of letting it go wrong quietly."""
import math

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first iteration whose loss is NaN or infinite, naming the iteration and
    every loss term. Runs before the checkpoint and EMA hooks of the same iteration, so no checkpoint
    or EMA state is written from non-finite weights."""

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        terms = {name: float(value.detach()) for name, value in outputs.items() if 'loss' in name}
        if all(math.isfinite(v) for v in terms.values()):
            return
        listed = ', '.join(f'{name}={value:.6g}' for name, value in terms.items())
        raise FloatingPointError(
            f'Non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, batch {batch_idx}): {listed}. '
            f'Stopped before any checkpoint of this iteration; resume from the last checkpoint after checking '
            f'the learning rate, the data and the precision settings.')
