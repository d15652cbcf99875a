"""An epoch-based train loop whose runs resume bit-identically, from any checkpoint, even mid-epoch.

mmengine's ``EpochBasedTrainLoop`` saves no RNG state and, resumed from an iteration checkpoint,
replays the whole interrupted epoch, so a resumed run drifts from an uninterrupted one: other
Mixup/CutMix draws, other stochastic-depth masks, more steps in that epoch. This loop

- seeds Python's, NumPy's and torch's (CPU and CUDA) generators from ``(seed, iteration)`` right
  before each batch is fetched, so the draws of an iteration (main-process transforms, Mixup/CutMix,
  DropPath) depend on nothing before it and no RNG state has to be checkpointed. ``seed`` is the process's
  ``runner.seed``: with ``randomness.diff_rank_seed=True`` (the project's configs) mmengine adds the rank to
  it, so each process draws its own numbers, as the release's ``torch.manual_seed(seed + rank)``;
- on resume, fetches and discards the batches the interrupted epoch already trained on, so that the
  sampler's order and the loader workers' generators (restarted each epoch from fixed seeds by
  mmengine's ``worker_init_fn``) replay exactly, then trains on from the next batch.

Discarding costs the data loading of the part of the epoch already done, no forward or backward.
"""
import itertools
import logging
import random

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop


def seed_iteration(seed: int, iteration: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from ``(seed, iteration)``."""
    high, low = np.random.SeedSequence([seed, iteration]).generate_state(2)
    random.seed(int(high) << 32 | int(low))
    np.random.seed([high, low])
    torch.manual_seed(int(high) << 32 | int(low))  # CUDA generators too


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes bit-identically, from epoch or iteration checkpoints.

    Same arguments as ``EpochBasedTrainLoop``. Exactness needs non-persistent loader workers (each
    epoch's workers then start from the same seeds in a resumed run) and the same number of
    processes, batch size and dataset as the interrupted run. The random streams are then the same; on a GPU
    the kernels may still differ run to run unless ``randomness.deterministic=True``.
    """

    def __init__(self, runner, dataloader, *args, **kwargs):
        super().__init__(runner, dataloader, *args, **kwargs)
        if self.dataloader.num_workers > 0 and self.dataloader.persistent_workers:
            print_log('train_dataloader.persistent_workers=True: loader workers keep their random state across '
                      'epochs, so a resumed run will not augment exactly as an uninterrupted one would; set '
                      'persistent_workers=False for bit-identical resume', logger='current', level=logging.WARNING)

    def run_epoch(self) -> None:
        """Train one epoch, or the rest of one after a resume."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        batches_per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * batches_per_epoch
        if not 0 <= done < batches_per_epoch:
            raise RuntimeError(
                f'cannot resume: the checkpoint is at iteration {self._iter} of epoch {self._epoch}, but an epoch '
                f'has {batches_per_epoch} iterations here (allowed: {self._epoch * batches_per_epoch} to '
                f'{(self._epoch + 1) * batches_per_epoch - 1}); resume with the dataset, batch size and number '
                f'of processes of the interrupted run')
        if done:
            print_log(f'resuming inside epoch {self._epoch + 1}: skipping the {done} batches it already trained on',
                      logger='current')
        for idx, data_batch in enumerate(self._seeded_batches(first=self._epoch * batches_per_epoch)):
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
