"""An optimizer constructor that leaves named parameters out of every parameter group, frozen at the values they
were loaded with: what the release's transfer script does to the final norm (its optimizer lists only the patch
embedding, the stages and the head)."""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, after freezing the parameters whose names start with one of
    ``paramwise_cfg['frozen']`` (e.g. ``['backbone.norm.']``): they get ``requires_grad=False`` (no gradient, so
    nothing computed for them) and no parameter group (no lr, weight decay or momentum that a scheduler could
    move). Every other ``paramwise_cfg`` option works as in mmengine.

    The constructor runs after DistributedDataParallel has wrapped the model, and DDP expects a gradient of
    every parameter that was trainable then: with several processes the parameters must already be frozen when
    the model is built (the DynaMixer backbone's ``frozen_norm=True`` for ``backbone.norm.``, as the project's
    transfer configs declare), else this refuses, naming them.
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
        frozen = [(name, param) for name, param in module.named_parameters() if name.startswith(self.frozen)]
        trainable = [name for name, param in frozen if param.requires_grad]
        if trainable and isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError(f'FrozenParamsOptimWrapperConstructor: {trainable} were trainable when '
                             f'DistributedDataParallel wrapped the model, which then expects their gradients and fails '
                             f'at the second iteration: freeze them when the model is built (for backbone.norm. of '
                             f'DynaMixer: model.backbone.frozen_norm=True)')
        for _, param in frozen:
            param.requires_grad_(False)
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        super().add_params(params, module, prefix, **kwargs)
        if prefix == '':  # the whole model has been added: drop the frozen parameters' groups
            params[:] = [group for group in params if all(p.requires_grad for p in group['params'])]
