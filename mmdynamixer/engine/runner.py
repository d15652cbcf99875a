"""``DynaMixerRunner``: mmengine's Runner with the project's run-time protections, named by a config's
``runner_type`` and so built by any OpenMMLab tool (mmpretrain's, mmdet's and mmseg's ``tools/train.py``,
``mim train``, or ours)."""
import datetime
import logging
import warnings

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch.nn.parallel import DistributedDataParallel

from .checkpoint_files import find_resumable_checkpoint
from .checks import check_config
from .comm_hooks import rank_ordered_allreduce
from .serialization import mmengine_checkpoint_loading


# Hooks every run gets: a NaN/inf loss stops training before it is checkpointed; a checkpoint whose tensors do
# not fit the model fails the load instead of mmengine's warning.
PROTECTIVE_HOOKS = ('FiniteLossHook', 'CheckpointShapeCheckHook')
# The default_hooks names mmengine's Runner defines (a None there removes mmengine's hook).
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint')


def _hook_type(hook) -> str:
    """The class name a hook config or hook names (``'mmengine.EMAHook'`` -> ``'EMAHook'``)."""
    if isinstance(hook, dict):
        kind = hook.get('type')
        return kind.__name__ if isinstance(kind, type) else str(kind).split('.')[-1]
    return type(hook).__name__


# dist_cfg backends a CPU process group can take; the config's CUDA backend (mmengine's default, nccl) becomes gloo.
CPU_BACKENDS = ('gloo', 'mpi')
CUDA_BACKENDS = ('nccl',)


def cpu_process_group_options(dist_cfg: dict) -> dict:
    """``torch.distributed.init_process_group``'s arguments for ``env_cfg.dist_cfg`` on CPU, read as mmengine's
    ``init_dist`` reads it (``mmengine/dist/utils.py``): ``timeout`` in seconds (-> ``timedelta``), ``backend``
    (gloo in place of nccl), ``init_backend`` (only 'torch' here), every other key passed on to
    ``init_process_group``. Raises naming a value that cannot apply without CUDA."""
    options = dict(dist_cfg or {})
    backend = options.pop('backend', 'nccl')
    if backend in CUDA_BACKENDS:
        backend = 'gloo'
    elif backend not in CPU_BACKENDS:
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} cannot run without CUDA: allowed '
                         f'{CPU_BACKENDS} ({CUDA_BACKENDS} become gloo)')
    init_backend = options.pop('init_backend', 'torch')
    if init_backend != 'torch':
        raise ValueError(f'env_cfg.dist_cfg.init_backend={init_backend!r} is not supported without CUDA: only '
                         f"'torch' (torch.distributed.init_process_group) is")
    timeout = options.get('timeout')
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f'env_cfg.dist_cfg.timeout={timeout!r}: the timeout is a number of seconds, as for '
                            f'mmengine\'s init_dist, e.g. dist_cfg=dict(backend=\'nccl\', timeout=1800)')
        options['timeout'] = datetime.timedelta(seconds=timeout)
    return dict(backend=backend, **options)


def _is_amp(optim_wrapper) -> bool:
    kind = optim_wrapper.get('type') if isinstance(optim_wrapper, dict) else None
    if isinstance(kind, type):
        return issubclass(kind, AmpOptimWrapper)
    return isinstance(kind, str) and kind.split('.')[-1] == 'AmpOptimWrapper'


def float32_optim_wrapper(optim_wrapper: dict) -> dict:
    """An ``AmpOptimWrapper`` config as mmengine's plain ``OptimWrapper`` (same optimizer, constructor and
    paramwise settings; no loss scale, dtype or FSDP flag), for where no CUDA device exists."""
    plain = {key: value for key, value in optim_wrapper.items() if key not in ('loss_scale', 'dtype', 'use_fsdp')}
    plain['type'] = 'OptimWrapper'
    return plain


@RUNNERS.register_module()
class DynaMixerRunner(Runner):
    """mmengine's ``Runner`` (same arguments) that

    - checks the config before building anything (:func:`~mmdynamixer.engine.checks.check_config`), the
      checkpoint of ``--resume PATH`` / ``load_from`` included;
    - resumes (``--resume`` without a path) from the checkpoint ``last_checkpoint`` names if it is intact, else
      from the newest intact one beside it, or stops listing each file and why
      (:func:`~mmdynamixer.engine.checkpoint_files.find_resumable_checkpoint`), instead of failing on a
      truncated newest checkpoint; warns when the work dir holds nothing to resume;
    - loads and resumes weights-only with mmengine's checkpoint types allowed for that call only
      (:func:`~mmdynamixer.engine.serialization.mmengine_checkpoint_loading`);
    - trains the config's mixed precision (``AmpOptimWrapper``, or ``--amp``) in float32, with a warning, where no
      CUDA device exists (mmengine's ``AmpOptimWrapper`` asserts one);
    - runs ``--launcher pytorch`` without CUDA: starts the process group with gloo and the config's other
      ``env_cfg.dist_cfg`` options (:func:`cpu_process_group_options`), and wraps DDP without device ids
      (mmengine's launcher calls ``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids``);
    - reduces DDP's gradients in rank order (:func:`~mmdynamixer.engine.comm_hooks.rank_ordered_allreduce`) on
      CPU, and on GPUs with ``randomness.deterministic=True``, so that a resumed run is bit-identical with any
      number of processes (DDP's bucket layout in a process's first iteration differs from later ones);
    - registers :class:`~mmdynamixer.engine.hooks.FiniteLossHook` and
      :class:`~mmdynamixer.engine.hooks.CheckpointShapeCheckHook` unless the config's ``default_hooks`` or
      ``custom_hooks`` list them (set them there to change their priority).

    Select it with ``runner_type = 'DynaMixerRunner'`` (``configs/_base_/dynamixer_runtime.py``).
    """

    def __init__(self, *args, cfg=None, **kwargs):
        if cfg is not None:
            check_config(cfg)
        super().__init__(*args, cfg=cfg, **kwargs)

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        # None switches off a default hook of a config (default_hooks.compile=None), as it does mmengine's own:
        # mmengine's register_default_hooks accepts None only for the names it defines (runner.py, "assert hook
        # is not None").
        default_hooks = {name: hook for name, hook in (default_hooks or {}).items()
                         if hook is not None or name in MMENGINE_DEFAULT_HOOKS}
        custom_hooks = list(custom_hooks or [])
        listed = {_hook_type(hook) for hook in [*custom_hooks, *(default_hooks or {}).values()] if hook is not None}
        custom_hooks += [dict(type=name) for name in PROTECTIVE_HOOKS if name not in listed]
        super().register_hooks(default_hooks, custom_hooks)

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not torch.cuda.is_available() and not dist.is_initialized():
            if self.launcher != 'pytorch':
                raise RuntimeError(f'launcher={self.launcher!r} without CUDA is not supported; use the pytorch '
                                   f'launcher (tools/dist_train.sh), which falls back to gloo on CPU')
            dist.init_process_group(**cpu_process_group_options(env_cfg.get('dist_cfg')))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        on_cpu = self.distributed and not torch.cuda.is_available()
        if on_cpu:
            model_wrapper_cfg = dict(model_wrapper_cfg or dict(
                type='MMDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
            model_wrapper_cfg['device_ids'] = None
        wrapped = super().wrap_model(model_wrapper_cfg, model)
        if (on_cpu or self.deterministic) and isinstance(wrapped, DistributedDataParallel):
            wrapped.register_comm_hook(None, rank_ordered_allreduce)
        return wrapped

    def build_optim_wrapper(self, optim_wrapper):
        if _is_amp(optim_wrapper) and not torch.cuda.is_available():
            warnings.warn(f'optim_wrapper.type={optim_wrapper["type"]!r} (mixed precision) needs CUDA and none is '
                          f'available: training in float32 with OptimWrapper instead')
            optim_wrapper = float32_optim_wrapper(optim_wrapper)
        return super().build_optim_wrapper(optim_wrapper)

    def load_or_resume(self) -> None:
        with mmengine_checkpoint_loading():
            if not self._has_loaded and self._resume and self._load_from is None:
                self._load_from = find_resumable_checkpoint(self.work_dir)
                if self._load_from is None:
                    self._resume = False
                else:
                    print_log(f'Resuming from {self._load_from}', logger='current', level=logging.INFO)
            super().load_or_resume()
