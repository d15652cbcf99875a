"""Real multi-process training on CPU. Our tools/dist_train.sh with 2 and 4 processes: each process draws its own
DropPath masks and Mixup/CutMix, and a run killed with SIGKILL mid-epoch and resumed with --resume ends
bit-identical to an uninterrupted one, with the recipe's own randomness settings (4 processes: three or more ranks
sum gradients in an order that depends on DDP's bucket layout unless reduced in rank order, engine/comm_hooks.py);
tools/dist_test.sh evaluates its checkpoint; two "nodes" of one process each train as one job. mmpretrain's own
dist_train.sh and train.py (through mim) train the digits config as it is, on 256 of its images, and --resume gets
past a truncated newest checkpoint."""
import itertools
import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from mmdynamixer.engine import mmengine_checkpoint_loading
from mmdynamixer.testing import tool_env, upstream_tool, write_image_folder

DEMO = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'
# Imported by the training processes: a kill switch, and a record of what each process draws.
HOOKS = '''
import hashlib
import json
import os
import signal

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.models.utils.batch_augments import CutMix, Mixup
from mmpretrain.registry import BATCH_AUGMENTS

DRAWS = {}


@BATCH_AUGMENTS.register_module()
class RecordedMixup(Mixup):
    """mmpretrain's Mixup, recording the lambda it draws (the first draw of its mix)."""

    def mix(self, batch_inputs, batch_scores):
        state = np.random.get_state()
        DRAWS.update(augment='Mixup', lam=float(np.random.beta(self.alpha, self.alpha)))
        np.random.set_state(state)
        return super().mix(batch_inputs, batch_scores)


@BATCH_AUGMENTS.register_module()
class RecordedCutMix(CutMix):
    """mmpretrain's CutMix, recording the lambda it draws and the box it cuts."""

    def cutmix_bbox_and_lam(self, img_shape, lam, count=None):
        box, corrected = super().cutmix_bbox_and_lam(img_shape, lam, count)
        DRAWS.update(augment='CutMix', lam=float(lam), box=[int(v) for v in box])
        return box, corrected


@HOOKS.register_module()
class RecordDraws(Hook):
    """Writes, per iteration, what this process drew: the Mixup/CutMix draws and every DropPath mask, with the
    state of torch's generator when the first DropPath drew (which decides every mask), to draws_rank<r>.jsonl."""
    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for module in model.modules():
            if type(module).__name__ == 'DropPath' and module.drop_prob > 0:
                module.register_forward_pre_hook(self._generator_state)
                module.register_forward_hook(self._mask)
        self.path = os.path.join(runner.work_dir, f'draws_rank{runner.rank}.jsonl')

    @staticmethod
    def _generator_state(module, args):
        DRAWS.setdefault('drop_path_generator', hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())

    @staticmethod
    def _mask(module, args, output):
        DRAWS.setdefault('drop_path_masks', []).extend(output.flatten(1).ne(0).any(1).int().tolist())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with open(self.path, 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter, **DRAWS)) + '\\n')
        DRAWS.clear()
        if runner.iter + 1 == int(os.environ.get('KILL_AFTER_ITER', -1)):
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _tensors(tree, prefix=''):
    """Every tensor (and number) in a nested checkpoint structure, by path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _tensors(sub, f'{prefix}{key}.').items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in _tensors(sub, f'{prefix}{i}.').items()}
    return {prefix[:-1]: tree} if isinstance(tree, (torch.Tensor, int, float)) else {}


def _load(path):
    with mmengine_checkpoint_loading():
        return torch.load(path, map_location='cpu')


def _draws(work: Path, ranks: int) -> dict:
    """{(rank, iteration): what that process drew}; a rank's later line for an iteration (after a resume) wins."""
    return {(rank, record['iter']): record for rank in range(ranks)
            for record in map(json.loads, (work / f'draws_rank{rank}.jsonl').read_text().splitlines())}


@pytest.fixture(scope='module')
def images64(tmp_path_factory) -> Path:
    """64 training images (4 classes x 16): 4 iterations per epoch at 16 images a step on 2 or 4 processes."""
    return write_image_folder(tmp_path_factory.mktemp('images64'), num_classes=4, per_class=16)


@pytest.mark.parametrize('processes', [2, 4])
def test_ranks_draw_their_own_and_a_killed_run_resumes_bit_identically(tmp_path, repo, images64, processes):
    # 16 images a step in all, 4 iterations per epoch, 3 epochs, a checkpoint every 3 iterations. The config's
    # randomness is the recipe's (seed 42, diff_rank_seed), not made deterministic here.
    (tmp_path / 'record_draws.py').write_text(HOOKS)
    config = tmp_path / 'resume_cfg.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = ['{repo / DEMO}']
        custom_imports = dict(imports=['mmdynamixer', 'record_draws'], allow_failed_imports=False)
        custom_hooks = [
            dict(type='EMAHook', momentum=0.02, update_buffers=True, priority='ABOVE_NORMAL'),
            dict(type='RecordDraws'),
        ]
        model = dict(backbone=dict(drop_path_rate=0.5), head=dict(num_classes=4),
                     train_cfg=dict(augments=[dict(type='RecordedMixup', alpha=0.8),
                                              dict(type='RecordedCutMix', alpha=1.0)]))
        data_preprocessor = dict(num_classes=4)
        train_dataloader = dict(batch_size={16 // processes}, dataset=dict(data_root='{images64}'))
        val_dataloader = dict(batch_size=16, dataset=dict(data_root='{images64}'))
        test_dataloader = val_dataloader
        param_scheduler = [dict(type='TimmCosineLR', t_initial=3, eta_min=1e-5, warmup_steps=1, warmup_init=1e-6,
                                by_epoch=True, begin=0, end=3)]
        train_cfg = dict(max_epochs=3, val_interval=3)
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1, save_best=None))
    '''))
    env = tool_env(PYTHONPATH=str(tmp_path))
    port = str(29610 + processes)

    def train(work, *extra, kill_after=None):
        run_vars = dict(env, PORT=port, **({'KILL_AFTER_ITER': str(kill_after)} if kill_after else {}))
        cmd = ['bash', 'tools/dist_train.sh', str(config), str(processes), '--work-dir', str(work), *extra]
        return subprocess.run(cmd, cwd=repo, env=run_vars, capture_output=True, text=True, timeout=900)

    uninterrupted = train(tmp_path / 'a')
    log = uninterrupted.stdout + uninterrupted.stderr
    assert uninterrupted.returncode == 0, log[-5000:]
    assert re.search(rf'Distributed training: True\s+GPU number: {processes}', log), log[-3000:]
    assert re.search(r'Epoch\(val\) \[3\]\[\d+/\d+\]\s+accuracy/top1', log)

    draws = _draws(tmp_path / 'a', processes)
    assert sorted({it for _, it in draws}) == list(range(12))
    for iteration in range(12):
        step = [draws[rank, iteration] for rank in range(processes)]
        for one, other in itertools.combinations(step, 2):
            assert one['lam'] != other['lam'], (iteration, one, other)
            assert one['drop_path_generator'] != other['drop_path_generator'], (iteration, one, other)
        assert {record['augment'] for record in step} <= {'Mixup', 'CutMix'}
        assert all(len(record['drop_path_masks']) == 2 * 4 * 16 // processes for record in step)
    masks = {rank: [draws[rank, it]['drop_path_masks'] for it in range(12)] for rank in range(processes)}
    assert all(masks[a] != masks[b] for a, b in itertools.combinations(range(processes), 2))

    killed = train(tmp_path / 'b', kill_after=7)  # inside epoch 2, one iteration after the checkpoint at 6
    assert killed.returncode != 0
    assert (tmp_path / 'b' / 'last_checkpoint').read_text().endswith('iter_6.pth')
    assert not (tmp_path / 'b' / 'iter_9.pth').exists()

    resumed = train(tmp_path / 'b', '--resume')
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-6000:]
    assert 'resumed epoch: 1, iter: 6' in log
    assert 'resuming inside epoch 2: skipping the 2 batches it already trained on' in log
    # The resumed processes draw, from iteration 7 on, exactly what the uninterrupted ones drew.
    resumed_draws = _draws(tmp_path / 'b', processes)
    assert all(resumed_draws[rank, it] == draws[rank, it] for rank in range(processes) for it in range(6, 12))

    expected = _load(tmp_path / 'a' / 'iter_12.pth')
    got = _load(tmp_path / 'b' / 'iter_12.pth')
    assert got['meta']['iter'] == expected['meta']['iter'] == 12 and got['meta']['epoch'] == expected['meta']['epoch']
    for part in ('state_dict', 'ema_state_dict', 'optimizer', 'param_schedulers'):
        want, have = _tensors(expected[part]), _tensors(got[part])
        assert want and have.keys() == want.keys(), part
        differ = [k for k in want if not (torch.equal(have[k], want[k]) if isinstance(want[k], torch.Tensor)
                                          else have[k] == want[k])]
        assert not differ, f'{part} differs after resume: {differ[:5]}'

    if processes == 2:
        tested = subprocess.run(['bash', 'tools/dist_test.sh', str(config), str(tmp_path / 'b' / 'iter_12.pth'), '2',
                                 '--work-dir', str(tmp_path / 'test')], cwd=repo, env=dict(env, PORT='29609'),
                                capture_output=True, text=True, timeout=600)
        assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
        assert re.search(r'Epoch\(test\) \[\d+/\d+\]\s+accuracy/top1: [\d.]+', tested.stdout + tested.stderr)


# One epoch of the digits config on 256 of its training images (2 iterations of 2 processes x 64, 4 of 1 process) and
# 64 of its validation images, a checkpoint every iteration.
ONE_EPOCH = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
             'train_dataloader.dataset.indices=256', 'val_dataloader.dataset.indices=64',
             'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=1']


@pytest.mark.stack
def test_mmpretrain_dist_train_on_digits_resumes_past_truncated_checkpoint(digits, repo):
    """mmpretrain's own dist_train.sh (2 CPU processes) on the digits config as shipped: the config's runner trains
    its AMP in float32 with a warning, runs DDP with gloo, and --resume skips a truncated newest checkpoint."""
    cwd = digits.parents[1]  # the config reads data/digits relative to the working directory
    work = cwd / 'work'
    config = str(repo / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py')

    def train(*extra):
        cmd = ['bash', str(upstream_tool('mmpretrain', 'dist_train.sh')), config, '2', '--work-dir', str(work), *extra]
        run = subprocess.run(cmd, cwd=cwd, env=tool_env(PORT='29621'), capture_output=True, text=True, timeout=900)
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-5000:]
        return log

    log = train(*ONE_EPOCH)
    assert "optim_wrapper.type='AmpOptimWrapper' (mixed precision) needs CUDA" in log
    assert re.search(r'Distributed launcher: pytorch\s+Distributed training: True\s+GPU number: 2', log), log[-3000:]
    assert re.search(r'Epoch\(val\) \[1\]\[\d+/\d+\]\s+accuracy/top1', log)
    newest = work / 'iter_2.pth'
    assert (work / 'last_checkpoint').read_text() == str(newest)
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])  # a kill mid-save, a full disk

    log = train('--resume', *ONE_EPOCH)
    assert re.search(rf"names '{re.escape(str(newest))}', which cannot be resumed .*unreadable.*; resuming from "
                     rf"{re.escape(str(work / 'iter_1.pth'))}", log), log[-5000:]
    assert 'resuming inside epoch 1: skipping the 1 batches it already trained on' in log
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', log) and not re.search(r'\[1\]\[1/2\]', log)
    assert _load(newest)['meta']['iter'] == 2


def test_mim_train_runs_the_digits_config_through_mmpretrains_tool(digits, repo):
    """`mim train mmpretrain CONFIG --gpus 2 --launcher pytorch`, as an OpenMMLab user starts a run: mim finds the
    train.py mmpretrain's wheel ships and launches 2 processes (CPU here) that train and validate."""
    cwd = digits.parents[1]
    work = cwd / 'mim_work'
    cmd = ['mim', 'train', 'mmpretrain', str(repo / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'), '--gpus', '2',
           '--launcher', 'pytorch', '--port', '29641', '--work-dir', str(work),
           '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=256',
           'val_dataloader.dataset.indices=64', 'default_hooks.logger.interval=1']
    run = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert re.search(r'Training command is .*mmpretrain/\.mim/tools/train\.py', log), log[-3000:]
    assert re.search(r'Distributed training: True\s+GPU number: 2', log), log[-3000:]
    # 256 images on 2 processes of 64: 2 iterations, then the validation of the epoch.
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', log) and re.search(r'Epoch\(val\) \[1\]\[1/1\]\s+accuracy/top1', log)
    assert (work / 'epoch_1.pth').is_file()


def test_two_nodes_of_one_process_train_as_one_job(digits, repo):
    """NNODES=2 NODE_RANK=0|1 MASTER_ADDR=127.0.0.1 tools/dist_train.sh CONFIG 1, started twice."""
    cwd = digits.parents[1]
    config = str(repo / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py')
    nodes = []
    for rank in (0, 1):
        env = tool_env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1', PORT='29631')
        cmd = ['bash', str(repo / 'tools/dist_train.sh'), config, '1', '--work-dir', str(cwd / f'node{rank}'),
               *ONE_EPOCH]
        nodes.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [node.communicate(timeout=900)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    # One job of 2 processes: 256 images / (2 x 64) = 2 iterations per epoch, not 256 / 64 = 4.
    assert re.search(r'Distributed training: True\s+GPU number: 2', logs[0]), logs[0][-3000:]
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', logs[0]), logs[0][-3000:]
    assert (cwd / 'node0' / 'iter_2.pth').exists() and not (cwd / 'node1' / 'iter_2.pth').exists()  # rank 0 saves
