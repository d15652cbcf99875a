"""timm's cosine schedule (the release's) as an mmengine parameter scheduler."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


class TimmCosineParamScheduler(_ParamScheduler):
    """timm ``CosineLRScheduler`` (``warmup_prefix=False``, one cycle), stepped per epoch as timm does.

    At step t: ``warmup_init + t * (base - warmup_init) / warmup_steps`` while t < ``warmup_steps``,
    then ``eta_min + (base - eta_min) * (1 + cos(pi * t / t_initial)) / 2`` until ``t_initial``, then
    ``eta_min`` (the cool-down). The cosine is a function of the absolute step, so it does not
    restart after the warm-up; this is what mmengine's LinearLR + CosineAnnealingLR cannot express.
    """

    def __init__(self, optimizer, param_name: str, t_initial: int, eta_min: float = 0.0,
                 warmup_steps: int = 0, warmup_init: float = 0.0, **kwargs):
        if t_initial <= 0 or not 0 <= warmup_steps < t_initial:
            raise ValueError(f'TimmCosine needs t_initial > 0 and 0 <= warmup_steps < t_initial, got '
                             f't_initial={t_initial}, warmup_steps={warmup_steps}')
        self.t_initial = t_initial
        self.eta_min = eta_min
        self.warmup_steps = warmup_steps
        self.warmup_init = warmup_init
        super().__init__(optimizer, param_name, **kwargs)

    def _value_at(self, base: float, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_init + step * (base - self.warmup_init) / self.warmup_steps
        if step >= self.t_initial:
            return self.eta_min
        return self.eta_min + 0.5 * (base - self.eta_min) * (1 + math.cos(math.pi * step / self.t_initial))

    def _get_value(self):
        return [self._value_at(base, self.last_step) for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, TimmCosineParamScheduler):
    """timm's cosine learning-rate schedule with linear warm-up and cool-down at ``eta_min``."""
