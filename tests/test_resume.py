"""ResumableEpochBasedTrainLoop in-process: what a resumed epoch fetches and draws, and what it refuses."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmdynamixer.engine import ResumableEpochBasedTrainLoop


class RandomSamples(Dataset):
    """Each sample is its index plus a draw from the global generators, as a random transform would be."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return index + float(np.random.rand()) + float(torch.rand(()))


def make_loop(trained, seed=3, **loader_options):
    """A loop over 4 batches per epoch whose model records each batch and a draw of its own (like DropPath)."""
    model = SimpleNamespace(train=lambda: None,
                            train_step=lambda batch, optim_wrapper: trained.append((batch, torch.rand(3))) or {})
    runner = SimpleNamespace(seed=seed, model=model, optim_wrapper=None, call_hook=lambda *args, **kwargs: None,
                             visualizer=SimpleNamespace())
    # (the order across epochs is the sampler's business)
    loader = DataLoader(RandomSamples(), batch_size=3, **loader_options)
    return ResumableEpochBasedTrainLoop(runner, loader, max_epochs=2)


def test_resumed_epoch_trains_on_exactly_what_the_uninterrupted_one_did():
    uninterrupted, resumed = [], []
    loop = make_loop(uninterrupted)
    loop.run_epoch()
    loop.run_epoch()

    loop = make_loop(resumed)
    loop._epoch, loop._iter = 1, 6  # a checkpoint after 2 of epoch 2's 4 iterations
    torch.rand(100), np.random.rand(100)  # whatever the restarted process drew before
    loop.run_epoch()

    assert len(uninterrupted) == 8 and len(resumed) == 2
    for (want_batch, want_draw), (got_batch, got_draw) in zip(uninterrupted[6:], resumed):
        assert torch.equal(got_batch, want_batch) and torch.equal(got_draw, want_draw)
    assert loop._iter == 8 and loop._epoch == 2


def test_iterations_draw_differently():
    trained = []
    make_loop(trained).run_epoch()
    draws = [draw for _, draw in trained]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1:])


@pytest.mark.parametrize('iteration', [3, 8])
def test_checkpoint_outside_the_epoch_is_refused(iteration):
    loop = make_loop([])
    loop._epoch, loop._iter = 1, iteration
    with pytest.raises(RuntimeError, match=rf'iteration {iteration} of epoch 1, but an epoch has 4 iterations here '
                                           r'\(allowed: 4 to 7\)'):
        loop.run_epoch()


def test_persistent_workers_are_warned_about(capsys):
    from mmengine.logging import MMLogger
    MMLogger.get_instance('test_resume_persistent')  # the 'current' logger, writing to the captured stdout
    make_loop([], num_workers=1, persistent_workers=True)
    out = capsys.readouterr().out
    assert 'WARNING - train_dataloader.persistent_workers=True' in out
    assert 'set persistent_workers=False for bit-identical resume' in out
