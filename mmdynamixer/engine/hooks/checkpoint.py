"""Checkpoint hooks: saves that survive a kill, and loads that fail when the tensors do not fit the model."""
import contextlib
import copy
import logging
import re
from typing import List, Tuple

import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop


# What AtomicCheckpointHook's mmengine base updates before each save: the kept checkpoints' steps, the last and
# the best checkpoints' paths.
BOOKKEEPING = ('keep_ckpt_ids', 'last_ckpt', 'best_ckpt_path', 'best_ckpt_path_dict')


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
    - A save that fails leaves the files and the hook's bookkeeping as they were before it (see
      :meth:`_removals_after_save`), so the checkpoints a later save removes are those on disk.

    Same arguments as ``CheckpointHook``.
    """

    def __init__(self, *args, out_dir=None, backend_args=None, file_client_args=None, **kwargs):
        local = out_dir is None or '://' not in str(out_dir)
        if local and backend_args is None and file_client_args is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, out_dir=out_dir, backend_args=backend_args, file_client_args=file_client_args,
                         **kwargs)

    @contextlib.contextmanager
    def _removals_after_save(self, runner):
        """Within the block, the file backend's removals are recorded. If the block succeeds they are done, except
        of the checkpoints the hook now points to (a new best saved under its predecessor's name). If it
        fails, nothing is removed, the hook's bookkeeping (:data:`BOOKKEEPING`) and the message hub's runtime info
        (its saved copy: ``keep_ckpt_ids``, ``last_ckpt``, best scores and paths) are put back as they were, and a
        checkpoint the block wrote before failing (a best one, then the save after it failed) is removed: mmengine
        updates all of these before it saves, and the hook must track exactly what is on disk, or an old
        checkpoint it no longer lists is never removed."""
        before = {name: copy.copy(getattr(self, name)) for name in BOOKKEEPING if hasattr(self, name)}
        tracked_before = self._tracked_paths()
        info = runner.message_hub.runtime_info  # the hub's own dict
        info_before = dict(info)
        deferred = _DeferredRemovals(self.file_backend)
        self.file_backend = deferred
        try:
            yield
        except BaseException:
            self.file_backend = deferred.backend
            written = self._tracked_paths() - tracked_before
            for name, value in before.items():
                setattr(self, name, value)
            info.clear()
            info.update(info_before)
            if runner.rank == 0:
                for path in written:
                    if self.file_backend.isfile(path):
                        self.file_backend.remove(path)
                    elif self.file_backend.isdir(path):
                        self.file_backend.rmtree(path)
            raise
        self.file_backend = deferred.backend
        kept = self._tracked_paths()
        for remove, path in deferred.removals:
            if path not in kept:
                remove(path)

    def _tracked_paths(self) -> set:
        """The checkpoints the hook points to: the last one, the best ones (mmengine sets those only with
        save_best)."""
        paths = {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                 *getattr(self, 'best_ckpt_path_dict', {}).values()}
        return paths - {None}

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._removals_after_save(runner):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save(runner):
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
    """Check a checkpoint against the model before mmengine loads it with ``strict=False``, which skips every
    tensor of another shape with a warning and trains or evaluates a partly initialised model.

    - ``--resume`` (the same model, continued) and evaluation (``tools/test.py``): every tensor the model has in
      common with the checkpoint must have the model's shape; otherwise the load fails, listing each with both
      shapes.
    - ``load_from`` in training, the toolboxes' way to fine-tune (a detector or segmentor trained on another
      dataset, with another ``num_classes``): fails only on what is surely wrong, no tensor name in common or a
      backbone tensor of another shape; every other tensor of another shape (the heads' class layers) is skipped
      as mmengine does and listed with both shapes at WARNING. ``strict_load_from=True`` makes it fail on any, as
      for ``--resume``: ``custom_hooks = [dict(type='CheckpointShapeCheckHook', strict_load_from=True)]``.

    Runs before the EMA hook.
    """

    priority = 'VERY_HIGH'

    def __init__(self, strict_load_from: bool = False):
        if not isinstance(strict_load_from, bool):
            raise TypeError(f'CheckpointShapeCheckHook: strict_load_from={strict_load_from!r}; expected True or False')
        self.strict_load_from = strict_load_from

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict = checkpoint.get('state_dict', checkpoint)
        source = runner.cfg.get('load_from') or getattr(runner, '_load_from', None) or \
            f'the last checkpoint in {runner.work_dir}'
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
        # mmengine's Runner keeps these private: resume (--resume) is set on the runner, and train() builds the
        # train loop before it loads (Runner.train -> build_train_loop, then load_or_resume); val() and test() do not.
        resuming = bool(getattr(runner, '_resume', False))
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        fine_tuning = training and not resuming and not self.strict_load_from
        backbone = [m for m in mismatches if m[0].startswith('backbone.')]
        if fine_tuning and not backbone:
            print_log(f'load_from={source}: {len(mismatches)} tensor(s) of another shape than the model\'s are not '
                      f'loaded (they keep their initialisation), as mmengine does when fine-tuning:\n'
                      f'{_listed(mismatches)}\nSet custom_hooks=[dict(type="CheckpointShapeCheckHook", '
                      f'strict_load_from=True)] to stop instead.', logger='current', level=logging.WARNING)
            return
        if fine_tuning:
            raise ValueError(f'load_from={source}: {len(backbone)} backbone tensor(s) differ in shape from the '
                             f'model\'s, so the backbone is another one (another arch, input size or channels):\n'
                             f'{_listed(backbone)}\nBuild the backbone the checkpoint was trained with, or convert '
                             f'the checkpoint first (tools/model_converters/dynamixer_resample.py for another input '
                             f'size). Tensors of another shape outside the backbone (a head\'s classes) are skipped '
                             f'with a warning.')
        why = ('--resume continues the same model' if resuming else
               'strict_load_from=True' if training else 'evaluation needs every tensor')
        raise ValueError(f'Checkpoint {source} does not fit the model ({why}): {len(mismatches)} tensor(s) differ in '
                         f'shape\n{_listed(mismatches)}\nCheck that the config builds the model the checkpoint was '
                         f'trained with.')


def _listed(mismatches: List[Tuple[str, tuple, tuple]]) -> str:
    return '\n'.join(f'  {key}: {saved} in the checkpoint, {wanted} in the model' for key, saved, wanted in mismatches)
