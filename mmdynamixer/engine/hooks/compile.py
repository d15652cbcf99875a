"""``CompileLayersHook``: the recipe's ``torch.compile``, declared in the config (``default_hooks.compile``)."""
import logging
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...models import DynaMixerNet


@HOOKS.register_module()
class CompileLayersHook(Hook):
    """Compiles each DynaMixer layer of the model with ``torch.compile`` before training, where the model lives on
    one of ``devices`` (default: CUDA only; on CPU the eager oneDNN path stays, being as fast there).

    Per layer rather than mmengine's ``compile=True`` (the whole ``train_step``): a layer's graph holds no data
    preprocessing (Mixup/CutMix draw in NumPy), no loss and no optimizer step, so nothing breaks it; DDP's gradient
    hooks stay outside the compiled regions; and layers of one stage share a graph, so a run compiles about ten
    graphs (see :data:`~mmdynamixer.models.block.COMPILE_RECOMPILE_LIMIT` for what triggers one). Weights, state
    dict keys, checkpoints and the EMA copy are those of the eager model: a compiled run resumes an eager
    checkpoint and the reverse. Turn it off with ``--cfg-options default_hooks.compile=None``.

    Args:
        devices (Sequence[str]): Device types on which to compile (``['cuda', 'cpu']`` compiles on CPU too).
        backend (str), mode (str, optional), dynamic (bool, optional), fullgraph (bool): ``torch.compile``'s.
    """
    priority = 'VERY_LOW'

    def __init__(self, devices: Sequence[str] = ('cuda',), backend: str = 'inductor', mode: Optional[str] = None,
                 dynamic: Optional[bool] = None, fullgraph: bool = False):
        if isinstance(devices, str) or not all(isinstance(device, str) for device in devices):
            raise TypeError(f'CompileLayersHook devices={devices!r}: expected a list of device types, e.g. '
                            f"['cuda'] or ['cuda', 'cpu']")
        self.devices = tuple(devices)
        self.options = dict(backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        networks = [module for module in model.modules() if isinstance(module, DynaMixerNet)]
        if not networks:
            print_log(f'CompileLayersHook: {type(model).__name__} holds no DynaMixer network: nothing compiled',
                      logger='current', level=logging.WARNING)
            return
        device = next(model.parameters()).device.type
        if device not in self.devices:
            print_log(f'CompileLayersHook: the model is on {device}, not on {list(self.devices)}: running eager',
                      logger='current', level=logging.INFO)
            return
        layers = sum(network.compile_layers(**self.options) for network in networks)
        print_log(f'CompileLayersHook: {layers} DynaMixer layers run through torch.compile({self.options}) from the '
                  f'first iteration on (it compiles there); default_hooks.compile=None turns it off',
                  logger='current', level=logging.INFO)
