"""An optimizer constructor that leaves named parameters out of every parameter group, frozen at the values they
were loaded with: what the release's transfer script does to the final norm (its optimizer lists only the patch
embedding, the stages and the head)."""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, after freezing the parameters whose names start with one of
    ``paramwise_cfg['frozen']`` (e.g. ``['backbone.norm.']``): they get ``requires_grad=False`` (no gradient, so
    nothing computed for them) and no parameter group (no lr, weight decay or momentum that a scheduler could
    move). Every other ``paramwise_cfg`` option works as in mmengine.

    A model wrapped in DistributedDataParallel was wrapped with these parameters trainable, so several processes
    need ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', find_unused_parameters=True)``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        frozen = self.paramwise_cfg.get('frozen')
        if (not isinstance(frozen, (list, tuple)) or not frozen
                or not all(isinstance(prefix, str) and prefix for prefix in frozen)):
            raise ValueError(f'FrozenParamsOptimWrapperConstructor: paramwise_cfg frozen={frozen!r}; expected a '
                             f'non-empty list of parameter name prefixes such as [\'backbone.norm.\']')
        self.frozen = tuple(frozen)

    def __call__(self, model: nn.Module):
        module = model.module if hasattr(model, 'module') else model
        names = [name for name, _ in module.named_parameters()]
        unmatched = [prefix for prefix in self.frozen if not any(name.startswith(prefix) for name in names)]
        if unmatched:
            raise ValueError(f'FrozenParamsOptimWrapperConstructor: no parameter name starts with {unmatched}; '
                             f'the model\'s parameters are e.g. {names[:3]} ... {names[-3:]}')
        for name, param in module.named_parameters():
            if name.startswith(self.frozen):
                param.requires_grad_(False)
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        super().add_params(params, module, prefix, **kwargs)
        if prefix == '':  # the whole model has been added: drop the frozen parameters' groups
            params[:] = [group for group in params if all(p.requires_grad for p in group['params'])]
