"""Checkpoint hooks: saves that survive a kill, and loads that fail when the tensors do not fit the model."""
import contextlib
import re
from typing import List, Tuple

import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


class _DeferredRemovals:
    """Stands in for a file backend during one save: removals are recorded, to be done after the save."""

    def __init__(self, backend):
        self.backend = backend
        self.removals = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, path) -> None:
        self.removals.append((self.backend.remove, path))

    def rmtree(self, path) -> None:
        self.removals.append((self.backend.rmtree, path))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves cannot leave a run without an intact checkpoint.

    - Local checkpoints are written through a temporary file renamed into place
      (``backend_args=dict(backend='atomic_local')`` unless ``backend_args`` or a remote ``out_dir`` are given),
      so a kill or a full disk mid-save leaves the previous files untouched.
    - With ``max_keep_ckpts``, mmengine removes the oldest checkpoint *before* writing the new one
      (``CheckpointHook._save_checkpoint_with_step``), and with ``save_best`` the previous best before writing
      the new best (``CheckpointHook._save_best_checkpoint``); here each is removed only after the new
      checkpoint (and, for regular saves, the ``last_checkpoint`` pointer) is written. The pointer itself is
      written in place by mmengine (one short write, no extension point); ``DynaMixerRunner``'s resume falls
      back to the newest intact checkpoint if it is ever empty or torn.

    Same arguments as ``CheckpointHook``.
    """

    def __init__(self, *args, out_dir=None, backend_args=None, file_client_args=None, **kwargs):
        local = out_dir is None or '://' not in str(out_dir)
        if local and backend_args is None and file_client_args is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, out_dir=out_dir, backend_args=backend_args, file_client_args=file_client_args,
                         **kwargs)

    @contextlib.contextmanager
    def _removals_after_save(self):
        """Within the block, the file backend's removals are recorded; after it (if it succeeds) they are done,
        except of the best checkpoints the hook now points to (a new best saved under its predecessor's name)."""
        deferred = _DeferredRemovals(self.file_backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = deferred.backend
        # (mmengine sets these attributes only with save_best)
        current_best = {getattr(self, 'best_ckpt_path', None), *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for remove, path in deferred.removals:
            if path not in current_best:
                remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._removals_after_save():
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)


def find_shape_mismatches(model: torch.nn.Module, state_dict: dict) -> List[Tuple[str, tuple, tuple]]:
    """(key, checkpoint shape, model shape) for every tensor of ``state_dict`` the model has with another shape.
    Keys saved from a DDP-wrapped model (``module.`` prefix) are matched as mmengine loads them."""
    expected = model.state_dict()
    mismatches = []
    for key, value in state_dict.items():
        key = re.sub(r'^module\.', '', key)
        if key in expected and hasattr(value, 'shape') and tuple(value.shape) != tuple(expected[key].shape):
            mismatches.append((key, tuple(value.shape), tuple(expected[key].shape)))
    return mismatches


@HOOKS.register_module()
class CheckpointShapeCheckHook(Hook):
    """Fail when a checkpoint loaded by ``--resume`` or ``load_from`` is of another model (no tensor name in
    common) or has tensors of other shapes than the model's, listing every such key with both shapes. mmengine
    loads with ``strict=False`` and only logs the mismatch, then trains or evaluates a partly initialised (or an
    uninitialised) model. Runs before the EMA hook."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict = checkpoint.get('state_dict', checkpoint)
        source = runner.cfg.get('load_from') or f'the last checkpoint in {runner.work_dir}'
        expected = model.state_dict()
        saved = [re.sub(r'^module\.', '', key) for key in state_dict]
        if expected and not set(saved) & set(expected):
            raise ValueError(f'Checkpoint {source} holds none of the model\'s {len(expected)} tensors (a checkpoint of '
                             f'another model?): it has e.g. {saved[:3]}, the model e.g. {list(expected)[:3]}. To '
                             f'fine-tune from another layout, convert it first or load the backbone with '
                             f'init_cfg=dict(type="Pretrained", prefix=...).')
        mismatches = find_shape_mismatches(model, state_dict)
        if not mismatches:
            return
        listed = '\n'.join(f'  {key}: {tuple(saved)} in the checkpoint, {tuple(wanted)} in the model'
                           for key, saved, wanted in mismatches)
        raise ValueError(f'Checkpoint {source} does not fit the model: {len(mismatches)} tensor(s) differ in shape\n'
                         f'{listed}\nCheck that the config builds the model the checkpoint was trained with; to '
                         f'fine-tune from it, load the backbone with init_cfg=dict(type="Pretrained", ...) instead.')
