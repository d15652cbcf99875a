"""ResumableEpochBasedTrainLoop in-process: what a resumed epoch fetches and draws, what its checkpoint records of
the layout, and what it refuses when the layout changed (tests/test_resume_layout.py: the same with real
processes)."""
import logging
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from torch.utils.data import DataLoader, Dataset

from mmdynamixer.engine import ResumableEpochBasedTrainLoop


class RandomSamples(Dataset):
    """Each sample is its index plus a draw from the global generators, as a random transform would be."""
    metainfo = {}

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return index + float(np.random.rand()) + float(torch.rand(()))


class IterationWarmUp:
    """Stands in for an iteration-based parameter scheduler (by_epoch=False) ending at iteration 20."""
    by_epoch, end = False, 20


def make_loop(trained, seed=3, batch_size=3, hub=None, calls=None, schedulers=None, **loader_options):
    """A loop over 12 samples (4 batches of 3 per epoch, 2 epochs) whose model records each batch and a draw of
    its own (like DropPath); ``hub``: the message hub state of a checkpoint it resumes from."""
    model = SimpleNamespace(train=lambda: None,
                            train_step=lambda batch, optim_wrapper: trained.append((batch, torch.rand(3))) or {})
    message_hub = MessageHub(f'test_resume_{uuid.uuid4().hex}')
    if hub is not None:
        message_hub.load_state_dict(hub)
    runner = SimpleNamespace(seed=seed, model=model, optim_wrapper=None, visualizer=SimpleNamespace(), val_loop=None,
                             call_hook=lambda name, **kwargs: (calls if calls is not None else []).append(name),
                             message_hub=message_hub, world_size=1, work_dir='work', param_schedulers=schedulers)
    # (the order across epochs is the sampler's business)
    loader = DataLoader(RandomSamples(), batch_size=batch_size, **loader_options)
    return ResumableEpochBasedTrainLoop(runner, loader, max_epochs=2)


def resumed_loop(trained, epoch, iteration, hub, **options):
    """A loop as mmengine's Runner.resume leaves it: position and message hub from the checkpoint."""
    loop = make_loop(trained, hub=hub, **options)
    loop._epoch, loop._iter = epoch, iteration
    return loop


@pytest.fixture
def uninterrupted():
    """Two epochs of 4 batches: what each iteration trained on, and the message hub state at the end (what the
    checkpoints of epoch 2 hold)."""
    trained = []
    loop = make_loop(trained)
    loop.run()
    return trained, loop.runner.message_hub.state_dict()


@pytest.fixture
def warnings_logged():
    """The WARNING messages logged to mmengine's 'current' logger (a new one) during the test."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_instance(f'test_resume_{uuid.uuid4().hex}')
    logger.addHandler(handler)
    yield lambda: [record.getMessage() for record in records]
    logger.removeHandler(handler)


def test_resumed_epoch_trains_on_exactly_what_the_uninterrupted_one_did(uninterrupted):
    trained, hub = uninterrupted
    resumed = []
    loop = resumed_loop(resumed, 1, 6, hub)  # a checkpoint after 2 of epoch 2's 4 iterations
    torch.rand(100), np.random.rand(100)  # whatever the restarted process drew before
    loop.run()

    assert len(trained) == 8 and len(resumed) == 2
    for (want_batch, want_draw), (got_batch, got_draw) in zip(trained[6:], resumed):
        assert torch.equal(got_batch, want_batch) and torch.equal(got_draw, want_draw)
    assert loop._iter == 8 and loop._epoch == 2


def test_the_layout_is_recorded_with_the_epoch_it_describes(uninterrupted):
    _, hub = uninterrupted
    assert hub['runtime_info']['train_layout'] == dict(world_size=1, batch_size=3, batches_per_epoch=4, epoch=1,
                                                       first_iter=4)
    assert hub['resumed_keys']['train_layout'] is True  # saved in every checkpoint, loaded by --resume


def test_iterations_draw_differently():
    trained = []
    make_loop(trained).run_epoch()
    draws = [draw for _, draw in trained]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1:])


def test_resumed_after_the_epochs_last_batch_only_ends_the_epoch(uninterrupted):
    """An iteration checkpoint of the epoch's last batch (mmengine saves it before the end-of-epoch hooks, with the
    epoch not yet counted): the end of the epoch runs, no batch is fetched or trained again."""
    _, hub = uninterrupted
    resumed, calls = [], []
    loop = resumed_loop(resumed, 1, 8, hub, calls=calls)
    loop.run()
    assert resumed == [] and calls == ['before_train', 'before_train_epoch', 'after_train_epoch', 'after_train']
    assert loop._epoch == 2 and loop._iter == 8


@pytest.mark.parametrize('iteration', [3, 9])
def test_checkpoint_outside_the_recorded_epoch_is_refused(uninterrupted, iteration):
    _, hub = uninterrupted
    with pytest.raises(RuntimeError, match=rf'iteration {iteration} of epoch 1, but by its record epoch 1 started at '
                                           r'iteration 4 with 1 process x 3 samples a step \(4 batches an epoch\) '
                                           r'\(allowed: iterations 4 to 8'):
        resumed_loop([], 1, iteration, hub).run()


def test_another_layout_resumes_at_an_epoch_boundary_with_a_warning(uninterrupted, warnings_logged):
    """Written with 4 batches of 3 an epoch, resumed at the start of epoch 2 with 6 batches of 2: all 6 trained,
    and the iteration-based schedule's end named with the epoch it now falls in."""
    _, hub = uninterrupted
    hub['runtime_info']['train_layout'].update(epoch=0, first_iter=0)  # as epoch_1.pth holds it
    resumed = []
    loop = resumed_loop(resumed, 1, 4, hub, batch_size=2, schedulers=[IterationWarmUp()])
    loop.run()
    assert len(resumed) == 6 and loop._iter == 4 + 6 and loop._epoch == 2
    (warning,) = warnings_logged()
    assert ('resuming at the start of epoch 2 with another layout: the checkpoint was written by 1 process x 3 '
            'samples a step (4 batches an epoch), this run has 1 process x 2 samples a step (6 batches an epoch) '
            '(changed: batch_size, batches_per_epoch). No batch is skipped or repeated, but the run is no longer '
            'bit-identical to an uninterrupted one') in warning
    assert 'Schedules by epoch (by_epoch=True) go on by epoch, as planned' in warning
    # Epochs 2, 3, 4 of 6 iterations: 4-9, 10-15, 16-21; of 4: 4-7, ..., 16-19.
    assert 'IterationWarmUp ends at iteration 20: in epoch 4 now, 5 with the old layout.' in warning
    assert loop.runner.message_hub.get_info('train_layout') == dict(world_size=1, batch_size=2, batches_per_epoch=6,
                                                                    epoch=1, first_iter=4)


def test_another_layout_inside_an_epoch_is_refused_naming_both_and_the_ways_out(uninterrupted):
    _, hub = uninterrupted
    resumed = []
    with pytest.raises(RuntimeError) as error:
        resumed_loop(resumed, 1, 6, hub, batch_size=2).run()
    assert str(error.value) == (
        'cannot resume inside epoch 2 with another layout: the checkpoint (iteration 6) is 2 of 4 batches into it, '
        'written by 1 process x 3 samples a step (4 batches an epoch); this run has 1 process x 2 samples a step '
        '(6 batches an epoch). Which of this layout\'s batches the interrupted run trained on cannot be known, and '
        'none may be skipped: either resume from the last epoch checkpoint with --resume PATH (epoch_1.pth) (the '
        'batches of epoch 2 already trained are then trained again), or resume with the old layout: 1 process(es), '
        'train_dataloader.batch_size=3.')
    assert resumed == []


def legacy_hub(max_iters: int, max_epochs: int) -> dict:
    """The message hub state of a checkpoint saved before the layout record: what mmengine's RuntimeInfoHook keeps."""
    hub = MessageHub(f'test_resume_{uuid.uuid4().hex}')
    hub.update_info('max_iters', max_iters)
    hub.update_info('max_epochs', max_epochs)
    return hub.state_dict()


def test_a_checkpoint_without_the_record_is_read_with_mmengines_epoch_length():
    resumed = []
    loop = resumed_loop(resumed, 1, 6, legacy_hub(8, 2))  # 4 batches an epoch, as this run
    loop.run()
    assert len(resumed) == 2 and loop._iter == 8
    with pytest.raises(RuntimeError, match=r'cannot resume inside epoch 2 with another layout: the checkpoint '
                                           r'\(iteration 6\) is 2 of 4 batches into it, written by an unrecorded '
                                           r'number of processes and batch size \(4 batches an epoch\); this run has '
                                           r'1 process x 2 samples a step \(6 batches an epoch\)'):
        resumed_loop([], 1, 6, legacy_hub(8, 2), batch_size=2).run()


def test_persistent_workers_are_warned_about(warnings_logged):
    make_loop([], num_workers=1, persistent_workers=True)
    (warning,) = warnings_logged()
    assert 'train_dataloader.persistent_workers=True' in warning
    assert 'set persistent_workers=False for bit-identical resume' in warning
