"""AtomicCheckpointHook after a save that fails (a full disk, a lost mount) and a run that goes on: the files and the
hook's bookkeeping stay as they were before the failed save, so that later saves remove exactly the checkpoints
that are on disk (issue 30, defect 6: mmengine forgets the oldest checkpoint before it saves, and with the removal
deferred that file stayed on disk forever)."""
import uuid
from pathlib import Path

import pytest
from mmengine.config import Config

from conftest import REPO
from mmdynamixer.engine import AtomicCheckpointHook, DynaMixerRunner
from mmdynamixer.testing import write_image_folder


@pytest.fixture
def trained(tmp_path):
    """The digits config trained 2 epochs of 1 iteration on 8 generated images, keeping 2 epoch checkpoints and the
    best by top-1 accuracy (validated every epoch): the runner and its checkpoint hook."""
    data = write_image_folder(tmp_path / 'data', num_classes=4, per_class=2)
    cfg = Config.fromfile(str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'))
    options = {'work_dir': str(tmp_path / 'work'), 'experiment_name': f'failed_saves_{uuid.uuid4().hex}',
               'model.head.num_classes': 4, 'data_preprocessor.num_classes': 4, 'train_dataloader.batch_size': 8,
               'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
               'default_hooks.checkpoint.interval': 1, 'default_hooks.checkpoint.max_keep_ckpts': 2,
               'default_hooks.checkpoint.save_best': 'accuracy/top1'}
    for split in ('train', 'val', 'test'):
        options.update({f'{split}_dataloader.dataset.data_root': str(data), f'{split}_dataloader.num_workers': 0,
                        f'{split}_dataloader.persistent_workers': False})
    cfg.merge_from_dict(options)
    runner = DynaMixerRunner.from_cfg(cfg)
    runner.train()
    (hook,) = [hook for hook in runner.hooks if isinstance(hook, AtomicCheckpointHook)]
    return runner, hook


def saved(runner) -> set:
    return {path.name for path in Path(runner.work_dir).glob('*.pth')}


def failing_save(monkeypatch, runner, fail_on: str):
    """Make the runner's save of a file whose name starts with ``fail_on`` fail, as a full disk would."""
    save = runner.save_checkpoint

    def save_or_fail(out_dir, filename, *args, **kwargs):
        if filename.startswith(fail_on):
            raise OSError(28, 'No space left on device')
        return save(out_dir, filename, *args, **kwargs)
    monkeypatch.setattr(runner, 'save_checkpoint', save_or_fail)
    return save


def test_a_failed_save_keeps_the_oldest_checkpoint_listed_and_a_later_save_removes_it(trained, monkeypatch):
    runner, hook = trained
    best = {name for name in saved(runner) if name.startswith('best_')}
    assert saved(runner) == {'epoch_1.pth', 'epoch_2.pth', *best} and list(hook.keep_ckpt_ids) == [1, 2]
    last = hook.last_ckpt

    save = failing_save(monkeypatch, runner, 'epoch_3')
    with pytest.raises(OSError, match='No space left on device'):
        hook.after_train_epoch(runner)  # epoch 3's checkpoint
    assert saved(runner) == {'epoch_1.pth', 'epoch_2.pth', *best}
    assert list(hook.keep_ckpt_ids) == [1, 2] and runner.message_hub.get_info('keep_ckpt_ids') == [1, 2]
    assert hook.last_ckpt == last == runner.message_hub.get_info('last_ckpt')

    monkeypatch.setattr(runner, 'save_checkpoint', save)  # space again: the same save succeeds
    hook.after_train_epoch(runner)
    assert saved(runner) == {'epoch_2.pth', 'epoch_3.pth', *best} and list(hook.keep_ckpt_ids) == [2, 3]


@pytest.mark.parametrize('fail_on', ['best_', 'epoch_'])
def test_a_failed_best_save_keeps_the_previous_best(trained, monkeypatch, fail_on):
    """A better score: mmengine points to the new best, then saves it, then saves the epoch's checkpoint again (for
    the new best's bookkeeping). Either save failing leaves the previous best file, path and score."""
    runner, hook = trained
    (previous,) = [name for name in saved(runner) if name.startswith('best_')]
    score = runner.message_hub.get_info('best_score')
    files = saved(runner)

    failing_save(monkeypatch, runner, fail_on)
    with pytest.raises(OSError, match='No space left on device'):
        hook.after_val_epoch(runner, {'accuracy/top1': score + 1})
    assert saved(runner) == files
    assert hook.best_ckpt_path.endswith(previous) and runner.message_hub.get_info('best_ckpt') == hook.best_ckpt_path
    assert runner.message_hub.get_info('best_score') == score
