"""Resuming on another number of processes (issue 30, defect 1), with tools/dist_train.sh and real gloo processes:
1 -> 2 -> 1. At an epoch boundary training goes on with a warning and trains every batch of the new layout's
epochs; inside an epoch both processes stop before training, naming both layouts and the ways out (the refusal's
other cases, 2 -> 1 among them, in-process: tests/test_resume.py). The checkpoints record the layout."""
import re
import subprocess
import textwrap

import pytest
import torch

from mmdynamixer.engine import mmengine_checkpoint_loading
from mmdynamixer.testing import tool_env, write_image_folder

DEMO = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'
ONE = '1 process x 8 samples a step (5 batches an epoch)'  # 40 images
TWO = '2 processes x 8 samples a step (3 batches an epoch)'  # 20 a process


def _meta_and_layout(path):
    with mmengine_checkpoint_loading():
        checkpoint = torch.load(path, map_location='cpu')
    return checkpoint['meta'], checkpoint['message_hub']['runtime_info']['train_layout']


@pytest.fixture(scope='module')
def config(tmp_path_factory, repo):
    """The digits config on 40 generated images, 8 a step per process; checkpoints every epoch and every 2
    iterations."""
    root = tmp_path_factory.mktemp('layout')
    images = write_image_folder(root / 'images', num_classes=4, per_class=10)
    path = root / 'layout_cfg.py'
    path.write_text(textwrap.dedent(f'''
        _base_ = ['{repo / DEMO}']
        model = dict(head=dict(num_classes=4))
        data_preprocessor = dict(num_classes=4)
        train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{images}'))
        val_dataloader = dict(batch_size=40, num_workers=0, persistent_workers=False,
                              dataset=dict(data_root='{images}'))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=2, val_interval=10)
        custom_hooks = [dict(type='AtomicCheckpointHook', by_epoch=False, interval=2, max_keep_ckpts=-1)]
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1, save_best=None))
    '''))
    return path


def test_resume_on_another_number_of_processes(config, repo, tmp_path):
    work = tmp_path / 'work'

    def train(processes, *extra, epochs=2):
        cmd = ['bash', 'tools/dist_train.sh', str(config), str(processes), '--work-dir', str(work), *extra,
               '--cfg-options', f'train_cfg.max_epochs={epochs}']
        run = subprocess.run(cmd, cwd=repo, env=tool_env(PORT='29651'), capture_output=True, text=True, timeout=600)
        return run.returncode, run.stdout + run.stderr

    code, log = train(1)  # epochs 1 and 2: iterations 0-4 and 5-9
    assert code == 0, log[-5000:]
    assert _meta_and_layout(work / 'epoch_1.pth')[1] == dict(world_size=1, batch_size=8, batches_per_epoch=5,
                                                             epoch=0, first_iter=0)

    # 1 -> 2 inside epoch 2 (3 of its 5 batches done): refused before any training.
    code, log = train(2, '--resume', str(work / 'iter_8.pth'), epochs=3)
    assert code != 0
    assert (f'cannot resume inside epoch 2 with another layout: the checkpoint (iteration 8) is 3 of 5 batches into '
            f'it, written by {ONE}; this run has {TWO}.') in log, log[-5000:]
    assert f'either resume from the last epoch checkpoint with --resume {work / "epoch_1.pth"} (the batches' in log
    assert 'or resume with the old layout: 1 process(es), train_dataloader.batch_size=8.' in log
    assert not re.search(r'Epoch\(train\)\s+\[2\]', log)

    # 1 -> 2 at the end of epoch 1: a warning, then every batch of epochs 2 and 3 (iterations 5-7, 8-10).
    code, log = train(2, '--resume', str(work / 'epoch_1.pth'), epochs=3)
    assert code == 0, log[-5000:]
    assert (f'resuming at the start of epoch 2 with another layout: the checkpoint was written by {ONE}, this run '
            f'has {TWO} (changed: world_size, batches_per_epoch). No batch is skipped or repeated, but the run is no '
            f'longer bit-identical to an uninterrupted one') in log, log[-5000:]
    for epoch in (2, 3):
        assert [int(i) for i in re.findall(rf'Epoch\(train\)\s+\[{epoch}\]\[\s*(\d)/3\]', log)] == [1, 2, 3], log
    meta, layout = _meta_and_layout(work / 'epoch_3.pth')
    assert meta['iter'] == 5 + 3 + 3
    assert layout == dict(world_size=2, batch_size=8, batches_per_epoch=3, epoch=2, first_iter=8)

    # 2 -> 1 at the end of epoch 2: all 5 batches of epoch 3.
    code, log = train(1, '--resume', str(work / 'epoch_2.pth'), epochs=3)
    assert code == 0, log[-5000:]
    assert f'the checkpoint was written by {TWO}, this run has {ONE}' in log
    assert [int(i) for i in re.findall(r'Epoch\(train\)\s+\[3\]\[(\d)/5\]', log)] == [1, 2, 3, 4, 5], log[-5000:]
    assert _meta_and_layout(work / 'epoch_3.pth')[0]['iter'] == 8 + 5
