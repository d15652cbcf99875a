"""Real 2-process training through tools/dist_train.sh, with checkpoint, --resume and tools/test.py."""
import re
import subprocess

from conftest import run_env

DEMO = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'


def test_dist_train_resume_and_test(tmp_path, repo, tiny_imagenet):
    work = tmp_path / 'work'
    common = [f'train_dataloader.dataset.data_root={tiny_imagenet}', f'val_dataloader.dataset.data_root={tiny_imagenet}',
              f'test_dataloader.dataset.data_root={tiny_imagenet}', 'model.head.num_classes=4',
              'data_preprocessor.num_classes=4', 'train_dataloader.batch_size=8', 'default_hooks.logger.interval=1',
              'default_hooks.checkpoint.interval=1', 'train_cfg.val_interval=1', 'randomness.seed=0']

    def train(max_epochs, *extra):
        cmd = ['bash', 'tools/dist_train.sh', DEMO, '2', '--work-dir', str(work), *extra,
               '--cfg-options', f'train_cfg.max_epochs={max_epochs}', *common]
        run = subprocess.run(cmd, cwd=repo, env=dict(run_env(), PORT='29611'), capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout + run.stderr

    log = train(1)
    assert (work / 'epoch_1.pth').exists()
    assert re.search(r'Epoch\(val\) \[1\]\[\d+/\d+\]\s+accuracy/top1', log)

    log = train(2, '--resume')
    assert 'resumed epoch: 1, iter: 2' in log
    assert (work / 'epoch_2.pth').exists()

    run = subprocess.run(['bash', 'tools/dist_test.sh', DEMO, str(work / 'epoch_2.pth'), '2', '--work-dir',
                          str(tmp_path / 'test'), '--cfg-options', *common], cwd=repo,
                         env=dict(run_env(), PORT='29612'), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r'Epoch\(test\) \[\d+/\d+\]\s+accuracy/top1: [\d.]+', run.stdout + run.stderr)
