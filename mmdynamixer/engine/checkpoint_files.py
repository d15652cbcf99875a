"""Checkpoint files on disk: written atomically, and found again for ``--resume`` only when intact.

mmengine 0.10.7 writes a checkpoint in place (``LocalBackend.put``), so a kill or a full disk during a save
leaves a truncated file, and ``find_latest_checkpoint`` resumes from whatever ``last_checkpoint`` names, so a
truncated newest checkpoint stops ``--resume`` with a zip-reader error. ``AtomicLocalBackend`` (selected by
:class:`~mmdynamixer.engine.hooks.AtomicCheckpointHook`) and :func:`find_resumable_checkpoint` (used by
:class:`~mmdynamixer.engine.DynaMixerRunner`) replace those two steps.
"""
import contextlib
import glob
import logging
import os
import os.path as osp
from typing import List, Optional, Tuple

import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

from ..checkpoints import WEIGHTS_ONLY_LOADING, refused_global
from .serialization import mmengine_checkpoint_loading

POINTER = 'last_checkpoint'
# What a checkpoint needs for ``Runner.resume``; "best" checkpoints are saved without optimizer state.
RESUME_KEYS = ('meta', 'state_dict', 'optimizer')


def replace_atomically(path: str, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file in the same folder, flushed to disk and renamed
    over ``path``: a reader (or a resume after a kill) sees the old file or the complete new one, never a
    truncated one. A failed write (a full disk) leaves the old file and no temporary file."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(temp, 'wb') as f:
            f.write(content)
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


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes replace the file atomically (see :func:`replace_atomically`).
    Select it with ``backend_args=dict(backend='atomic_local')``."""

    def put(self, obj: bytes, filepath) -> None:
        replace_atomically(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        replace_atomically(str(filepath), obj.encode(encoding))


class CheckpointRefusedError(RuntimeError):
    """A checkpoint file that reads but must not be resumed from: it holds objects weights-only loading refuses,
    or it is not a training checkpoint. Unlike a damaged file, never a reason to fall back to an older one."""

    def __init__(self, path: str, reason: str):
        super().__init__(f'Cannot resume from {path}: it {reason}')
        self.path, self.reason = path, reason


def why_not_resumable(path: str) -> Optional[str]:
    """None when ``path`` is a complete training checkpoint; the reason when it is missing or cannot be read
    (damaged, truncated); :class:`CheckpointRefusedError` when it reads but is refused. Reads the pickle and maps
    the tensors without reading them: a truncated file fails (its zip directory is at the end)."""
    if not osp.isfile(path):
        return 'no such file'
    try:
        with mmengine_checkpoint_loading():
            checkpoint = torch.load(path, map_location='cpu', mmap=True, weights_only=WEIGHTS_ONLY_LOADING)
    except Exception as error:
        refused = refused_global(error)
        if refused:
            raise CheckpointRefusedError(path, f'holds objects that weights-only loading refuses (only tensors, '
                                               f'plain data and mmengine\'s types are read): {refused}') from error
        lines = str(error).strip().splitlines()
        return f'unreadable ({type(error).__name__}: {lines[0] if lines else ""})'
    missing = [key for key in RESUME_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointRefusedError(path, f'is not a training checkpoint (no {", ".join(missing)}): only the '
                                           f'checkpoints training saves (iter_N.pth, epoch_N.pth) can be resumed')
    return None


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """What ``--resume`` without a path resumes from (in place of mmengine's ``find_latest_checkpoint``).

    No ``last_checkpoint`` in ``work_dir``: None, a fresh run (as mmengine), with a warning naming what was
    looked for. A pointer to an intact checkpoint: that checkpoint. A pointer that is empty or names a missing
    or damaged file: the newest (by modification time) intact training checkpoint beside it, with a warning
    naming each file skipped and why; if there is none, an error listing each file and why -- never a silent
    start from scratch. A pointer to a file that reads but is refused (:class:`CheckpointRefusedError`) stops
    the run with the reason: an older checkpoint never silently replaces it.

    Falling back rather than failing because preemption is the normal case for long runs and their
    restart must not wait for a person: an older intact checkpoint costs at most one checkpoint
    interval of training, while starting over would throw the run away and overwrite its history.
    Only the pointer decides when it is intact, so stale checkpoints of an earlier run in the same
    folder are never preferred over it.
    """
    pointer = osp.join(work_dir, POINTER)
    if not osp.exists(pointer):
        print_log(f'--resume: no checkpoint to resume from in the work dir {work_dir} (looked for {POINTER}, '
                  f'which training writes beside its checkpoints): starting from scratch. If the run you meant '
                  f'to resume saved elsewhere, pass its --work-dir or --resume PATH.', logger='current',
                  level=logging.WARNING)
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
        try:
            problem = why_not_resumable(path)
        except CheckpointRefusedError as refused:  # e.g. a best checkpoint, without optimizer state
            problem = refused.reason
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
