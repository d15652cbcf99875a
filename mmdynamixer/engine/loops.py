"""An epoch-based train loop whose runs resume bit-identically, from any checkpoint, even mid-epoch.

mmengine's ``EpochBasedTrainLoop`` saves no RNG state and, resumed from an iteration checkpoint,
replays the whole interrupted epoch, so a resumed run drifts from an uninterrupted one: other
Mixup/CutMix draws, other stochastic-depth masks, more steps in that epoch. This loop

- seeds Python's, NumPy's and torch's (CPU and CUDA) generators from ``(seed, iteration)`` right
  before each batch is fetched, so the draws of an iteration (main-process transforms, Mixup/CutMix,
  DropPath) depend on nothing before it and no RNG state has to be checkpointed. ``seed`` is the process's
  ``runner.seed``: with ``randomness.diff_rank_seed=True`` (the project's configs) mmengine adds the rank to
  it, so each process draws its own numbers, as the release's ``torch.manual_seed(seed + rank)``;
- records in the message hub, which every checkpoint saves and ``--resume`` loads, the layout of the epoch
  being trained (processes, samples per process and step, batches per epoch) and the iteration it began at,
  so that a checkpoint's iteration count can be read as a position in its epoch;
- on resume, fetches and discards the batches the interrupted epoch already trained on, so that the
  sampler's order and the loader workers' generators (restarted each epoch from fixed seeds by
  mmengine's ``worker_init_fn``) replay exactly, then trains on from the next batch.

Discarding costs the data loading of the part of the epoch already done, no forward or backward.
"""
import itertools
import logging
import math
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.optim.scheduler.param_scheduler import INF
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop

# The message hub's runtime-info key of the record: ``world_size``, ``batch_size`` (per process),
# ``batches_per_epoch``, and ``epoch`` / ``first_iter``: the epoch being trained and its first iteration.
LAYOUT_KEY = 'train_layout'


def seed_iteration(seed: int, iteration: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from ``(seed, iteration)``."""
    high, low = np.random.SeedSequence([seed, iteration]).generate_state(2)
    random.seed(int(high) << 32 | int(low))
    np.random.seed([high, low])
    torch.manual_seed(int(high) << 32 | int(low))  # CUDA generators too


def describe_layout(layout: dict) -> str:
    """'2 processes x 16 samples a step (3 batches an epoch)'; a record without processes and batch size (a
    checkpoint of an earlier version, see :meth:`ResumableEpochBasedTrainLoop.recorded_layout`) by its epoch only."""
    epoch = f'{layout["batches_per_epoch"]} batches an epoch'
    if layout.get('world_size') is None:
        return f'an unrecorded number of processes and batch size ({epoch})'
    processes = f'{layout["world_size"]} process{"es" if layout["world_size"] != 1 else ""}'
    return f'{processes} x {layout["batch_size"]} samples a step ({epoch})'


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes bit-identically, from epoch or iteration checkpoints.

    Same arguments as ``EpochBasedTrainLoop``. Exactness needs non-persistent loader workers (each
    epoch's workers then start from the same seeds in a resumed run) and the layout of the interrupted run: the
    same number of processes, batch size and dataset. The random streams are then the same; on a GPU the
    kernels may still differ run to run unless ``randomness.deterministic=True``.

    Resumed with another layout (say the job came back on another number of GPUs), the checkpoint's layout is
    compared with this run's: at an epoch boundary training goes on with a WARNING (no batch skipped or
    repeated, but no longer bit-identical); inside an epoch it stops, since which of this layout's batches the
    interrupted run trained on cannot be known. A checkpoint without the record (saved before it existed) is
    read with the epoch length mmengine saves in every checkpoint (``max_iters / max_epochs``).
    """

    def __init__(self, runner, dataloader, *args, **kwargs):
        super().__init__(runner, dataloader, *args, **kwargs)
        if self.dataloader.num_workers > 0 and self.dataloader.persistent_workers:
            print_log('train_dataloader.persistent_workers=True: loader workers keep their random state across '
                      'epochs, so a resumed run will not augment exactly as an uninterrupted one would; set '
                      'persistent_workers=False for bit-identical resume', logger='current', level=logging.WARNING)
        # Where the first epoch that run() trains starts: (batches of it already trained, batches it has).
        self._resumed_at = (0, len(self.dataloader))

    def layout(self) -> dict:
        """This run's layout: processes, samples per process and step, batches per epoch."""
        batch_size = self.dataloader.batch_size or getattr(self.dataloader.batch_sampler, 'batch_size', None)
        return dict(world_size=self.runner.world_size, batch_size=batch_size, batches_per_epoch=len(self.dataloader))

    def recorded_layout(self) -> Optional[dict]:
        """The layout record the resumed checkpoint's message hub holds, with its epoch and first iteration. For
        a checkpoint without one (saved before the record existed), the epoch length from mmengine's own
        ``max_iters / max_epochs`` (RuntimeInfoHook), the epoch starting at ``epoch x that length`` as this loop
        then assumed; None when even those are missing."""
        hub = self.runner.message_hub
        record = hub.get_info(LAYOUT_KEY)
        if record is not None:
            return record
        max_iters, max_epochs = hub.get_info('max_iters'), hub.get_info('max_epochs')
        if not max_iters or not max_epochs or max_iters % max_epochs:
            return None
        length = max_iters // max_epochs
        return dict(world_size=None, batch_size=None, batches_per_epoch=length, epoch=self._epoch,
                    first_iter=self._epoch * length)

    def run(self) -> torch.nn.Module:
        """Train, from where the resumed checkpoint (if any) left off."""
        if self._iter or self._epoch:
            self._resumed_at = self._resume_position()
        return super().run()

    def _resume_position(self) -> tuple:
        """(batches of epoch ``self._epoch`` the checkpoint trained on, batches that epoch has); warns or stops
        when the layout changed (see the class docstring)."""
        current = self.layout()
        recorded = self.recorded_layout() or dict(current, epoch=self._epoch,
                                                  first_iter=self._epoch * current['batches_per_epoch'])
        length = recorded['batches_per_epoch']
        done = self._iter - recorded['first_iter']
        if self._epoch == recorded['epoch'] + 1 and done == length:
            done = 0  # an epoch checkpoint: the recorded epoch is over, the next starts here
        elif self._epoch != recorded['epoch'] or not 0 <= done <= length:
            raise RuntimeError(
                f'cannot resume: the checkpoint is at iteration {self._iter} of epoch {self._epoch}, but by its '
                f'record epoch {recorded["epoch"]} started at iteration {recorded["first_iter"]} with '
                f'{describe_layout(recorded)} (allowed: iterations {recorded["first_iter"]} to '
                f'{recorded["first_iter"] + length} of that epoch, or the end of it in the next); this run has '
                f'{describe_layout(current)}. Was the checkpoint saved by another loop?')
        changed = [key for key in current if recorded.get(key) not in (None, current[key])]
        if not changed:
            return done, length
        if 0 < done < length:
            last_epoch = osp.join(self.runner.work_dir, f'epoch_{self._epoch}.pth')
            if self._epoch == 0:
                restart = 'start the run again (no epoch has ended yet)'
            else:
                restart = (f'resume from the last epoch checkpoint with --resume '
                           f'{last_epoch if osp.isfile(last_epoch) else f"PATH (epoch_{self._epoch}.pth)"} (the '
                           f'batches of epoch {self._epoch + 1} already trained are then trained again)')
            old = ('' if recorded.get('world_size') is None else
                   f': {recorded["world_size"]} process(es), train_dataloader.batch_size={recorded["batch_size"]}')
            raise RuntimeError(
                f'cannot resume inside epoch {self._epoch + 1} with another layout: the checkpoint (iteration '
                f'{self._iter}) is {done} of {length} batches into it, written by {describe_layout(recorded)}; '
                f'this run has {describe_layout(current)}. Which of this layout\'s batches the interrupted run '
                f'trained on cannot be known, and none may be skipped: either {restart}, or resume with the old '
                f'layout{old}.')
        where = (f'at the start of epoch {self._epoch + 1}' if done == 0 else
                 f'after the last batch of epoch {self._epoch + 1} (its end of epoch runs first)')
        print_log(
            f'resuming {where} with another layout: the checkpoint was written by {describe_layout(recorded)}, this '
            f'run has {describe_layout(current)} (changed: {", ".join(changed)}). No batch is skipped or repeated, '
            f'but the run is no longer bit-identical to an uninterrupted one: other batches, other random draws, '
            f'and iterations counted on from {self._iter}. {self._schedules_note(length, current, done == length)}',
            logger='current', level=logging.WARNING)
        return done, length

    def _schedules_note(self, old_length: int, current: dict, epoch_over: bool) -> str:
        """What a layout change does to the run's parameter schedules (``epoch_over``: the resumed epoch's batches
        are all trained)."""
        note = ('Schedules by epoch (by_epoch=True) go on by epoch, as planned. Iteration-based ones (by_epoch=False, '
                'and by_epoch=True with convert_to_iter_based=True, which mmengine converted to iterations with the '
                f'old {old_length} batches an epoch and restores from the checkpoint as saved) go on counting '
                'iterations, so their steps and ends fall at other epochs')
        schedulers = self.runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        ends = []
        for scheduler in schedulers:
            if scheduler.by_epoch or not self._iter < scheduler.end < INF:
                continue
            remaining = scheduler.end - self._iter
            now = self._epoch + epoch_over + math.ceil(remaining / current['batches_per_epoch'])
            before = self._epoch + epoch_over + math.ceil(remaining / old_length)
            ends.append(f'{type(scheduler).__name__} ends at iteration {scheduler.end}: in epoch {now} now, '
                        f'{before} with the old layout')
        return note + (': ' + '; '.join(ends) if ends else '') + '.'

    def run_epoch(self) -> None:
        """Train one epoch, or the rest of one after a resume."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        (done, length), self._resumed_at = self._resumed_at, (0, len(self.dataloader))
        if done < length:  # (done == length: resumed after the epoch's last batch, only its end is left)
            first = self._iter - done
            self.runner.message_hub.update_info(LAYOUT_KEY, dict(self.layout(), epoch=self._epoch,
                                                                 first_iter=first))
            if done:
                print_log(f'resuming inside epoch {self._epoch + 1}: skipping the {done} batches it already '
                          f'trained on', logger='current')
            for idx, data_batch in enumerate(self._seeded_batches(first)):
                if idx >= done:
                    self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _seeded_batches(self, first: int):
        """This epoch's batches, each fetched right after seeding the generators for its iteration."""
        seed_iteration(self.runner.seed, first)  # creating the iterator draws the workers' base seed
        batches = iter(self.dataloader)
        for iteration in itertools.count(first):
            seed_iteration(self.runner.seed, iteration)
            try:
                yield next(batches)
            except StopIteration:
                return
