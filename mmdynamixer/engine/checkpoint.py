"""Checkpoints that survive a kill during a save, a resume that never silently starts over, and loads
that fail when the checkpoint's tensors do not fit the model.

mmengine 0.10.7 writes checkpoints and the ``last_checkpoint`` pointer in place, and CheckpointHook
deletes the oldest checkpoint (``max_keep_ckpts``) *before* writing the next one. A kill during a save
therefore leaves a truncated file, and with ``max_keep_ckpts=1`` no intact checkpoint at all.
:func:`make_checkpoint_saves_atomic` fixes the three writes; :func:`find_resumable_checkpoint` replaces
the pointer lookup of ``--resume``; :class:`CheckpointShapeCheckHook` turns mmengine's shape-mismatch
warning (it loads with ``strict=False`` and trains on) into an error. :func:`protect_checkpoints`, which
``prepare_runtime`` calls, applies all three.
"""
import contextlib
import functools
import glob
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

POINTER = 'last_checkpoint'
# What a checkpoint needs for ``Runner.resume``; "best" checkpoints are saved without optimizer state.
RESUME_KEYS = ('meta', 'state_dict', 'optimizer')


def _replace_atomically(path: str, write) -> None:
    """Write ``path`` through a temporary file in the same folder, flushed to disk and then renamed over
    ``path``: a reader (or a resume after a kill) sees the old file or the complete new one, never a
    truncated one. ``write(file)`` writes the content to the open binary file."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(temp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    # The rename itself must reach the disk too, or a power cut can bring back the old directory entry.
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
    # Temporary files of earlier saves of this file that were killed (a resumed run saves it again).
    for leftover in glob.glob(osp.join(glob.escape(folder), f'.{glob.escape(osp.basename(path))}.*.tmp')):
        with contextlib.suppress(OSError):
            os.remove(leftover)


def _atomic_put(backend, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` (what ``save_checkpoint`` writes local checkpoints with), made atomic."""
    _replace_atomically(str(filepath), lambda f: f.write(obj))


class _AtomicTextWrite:
    """``open(path, 'w')`` for CheckpointHook's pointer write: collects the text and replaces the file
    atomically when the ``with`` block ends without an error."""

    def __init__(self, path: str):
        self.path, self.parts = path, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            _replace_atomically(self.path, lambda f: f.write(''.join(self.parts).encode()))


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """The ``open`` CheckpointHook's module sees: its only call writes ``last_checkpoint`` in place."""
    if mode == 'w':
        return _AtomicTextWrite(file)
    return open(file, mode, *args, **kwargs)


class _DeferredRemovals:
    """Stands in for CheckpointHook's file backend during one save: removals of old checkpoints are
    recorded instead of done, so they happen only once the new checkpoint and pointer are written."""

    def __init__(self, backend):
        self.backend = backend
        self.removals = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, path) -> None:
        self.removals.append((self.backend.remove, path))

    def rmtree(self, path) -> None:
        self.removals.append((self.backend.rmtree, path))


def _save_then_remove_old(save_with_step):
    @functools.wraps(save_with_step)
    def wrapper(self, runner, step, meta):
        deferred = _DeferredRemovals(self.file_backend)
        self.file_backend = deferred
        try:
            save_with_step(self, runner, step, meta)
        finally:
            self.file_backend = deferred.backend
        for remove, path in deferred.removals:
            remove(path)

    wrapper.saves_before_removing = True
    return wrapper


def make_checkpoint_saves_atomic() -> None:
    """Make mmengine's checkpoint saves atomic: the checkpoint file (``LocalBackend.put``), the
    ``last_checkpoint`` pointer (written with ``open`` inside ``CheckpointHook``), and the removal of the
    oldest checkpoint moved after the save. Idempotent."""
    from mmengine.fileio.backends import LocalBackend
    from mmengine.hooks import checkpoint_hook

    LocalBackend.put = _atomic_put
    # A module global shadows the builtin for that module only: ``open`` appears there once, for the pointer.
    checkpoint_hook.open = _checkpoint_hook_open
    if not getattr(CheckpointHook._save_checkpoint_with_step, 'saves_before_removing', False):
        CheckpointHook._save_checkpoint_with_step = _save_then_remove_old(CheckpointHook._save_checkpoint_with_step)


def protect_checkpoints(cfg) -> None:
    """Everything above, for a Runner built from ``cfg``: atomic saves, the resume lookup, the shape check."""
    from mmengine.runner import runner

    make_checkpoint_saves_atomic()
    runner.find_latest_checkpoint = find_resumable_checkpoint  # the name Runner.load_or_resume calls
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == 'CheckpointShapeCheckHook' for hook in hooks if isinstance(hook, dict)):
        cfg.custom_hooks = hooks + [dict(type='CheckpointShapeCheckHook')]


def why_not_resumable(path: str) -> Optional[str]:
    """None when ``path`` is a complete training checkpoint, else the reason it is not. Reads the pickle
    and maps the tensors without reading them: a truncated file fails (its zip directory is at the end)."""
    if not osp.isfile(path):
        return 'no such file'
    try:
        checkpoint = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    except Exception as error:  # any failure to read it means it cannot be resumed
        return f'unreadable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""})'
    missing = [key for key in RESUME_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        return f'not a training checkpoint (no {", ".join(missing)})'
    return None


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """What ``--resume`` without a path resumes from (replaces mmengine's ``find_latest_checkpoint``).

    No ``last_checkpoint`` in ``work_dir``: None, a fresh run (as mmengine). A pointer to an intact
    checkpoint: that checkpoint. A pointer that is empty or names a missing or corrupt file: the newest
    (by modification time) intact training checkpoint beside it, with a warning naming what was skipped;
    if there is none, an error -- never a silent start from scratch.

    Falling back rather than failing because preemption is the normal case for long runs and their
    restart must not wait for a person: an older intact checkpoint costs at most one checkpoint
    interval of training, while starting over would throw the run away and overwrite its history.
    Only the pointer decides when it is intact, so stale checkpoints of an earlier run in the same
    folder are never preferred over it.
    """
    pointer = osp.join(work_dir, POINTER)
    if not osp.exists(pointer):
        print_log(f'Did not find {pointer}: starting from scratch.', logger='current')
        return None
    with open(pointer) as f:
        named = f.read().strip()
    problem = why_not_resumable(named) if named else 'the pointer is empty'
    if problem is None:
        return named
    rejected: List[Tuple[str, str]] = [(named or pointer, problem)]
    folders = sorted({osp.abspath(work_dir)} | ({osp.dirname(osp.abspath(named))} if named else set()))
    candidates = {path for folder in folders for path in glob.glob(osp.join(folder, '*.pth'))}
    candidates.discard(osp.abspath(named) if named else None)
    for path in sorted(candidates, key=osp.getmtime, reverse=True):
        problem = why_not_resumable(path)
        if problem is None:
            skipped = '; '.join(f'{p}: {why}' for p, why in rejected)
            print_log(f'{pointer} names {named!r}, which cannot be resumed ({skipped}); resuming from {path}, '
                      f'the newest intact checkpoint in {", ".join(folders)}', logger='current', level=logging.WARNING)
            return path
        rejected.append((path, problem))
    listed = '\n'.join(f'  {p}: {why}' for p, why in rejected)
    raise RuntimeError(f'Cannot resume: {pointer} names {named!r} and no checkpoint in {", ".join(folders)} can '
                       f'be resumed:\n{listed}\nPass --resume PATH to resume from a checkpoint you choose, or '
                       f'remove {pointer} to start from scratch.')


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
    """Fail when a checkpoint loaded by ``--resume`` or ``load_from`` has tensors of other shapes than the
    model's, listing every such key with both shapes. mmengine loads with ``strict=False`` and only logs
    the mismatch, then trains or evaluates a partly initialised model. Runs before the EMA hook."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        mismatches = find_shape_mismatches(model, checkpoint.get('state_dict', checkpoint))
        if not mismatches:
            return
        source = runner.cfg.get('load_from') or f'the last checkpoint in {runner.work_dir}'
        listed = '\n'.join(f'  {key}: {tuple(saved)} in the checkpoint, {tuple(wanted)} in the model'
                           for key, saved, wanted in mismatches)
        raise ValueError(f'Checkpoint {source} does not fit the model: {len(mismatches)} tensor(s) differ in shape\n'
                         f'{listed}\nCheck that the config builds the model the checkpoint was trained with; to '
                         f'fine-tune from it, load the backbone with init_cfg=dict(type="Pretrained", ...) instead.')
