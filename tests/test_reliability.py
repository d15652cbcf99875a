"""Faults and bad input: kills during checkpoint saves, corrupt and mismatched checkpoints, non-finite
values under mixed precision, and broken datasets. Each must end in a clear error or a safe recovery."""
import copy
import importlib
import logging
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import RUNNERS

from mmdynamixer.datasets import CheckedLoadImageFromFile
from mmdynamixer.engine import mmengine_checkpoint_loading
from mmdynamixer.engine.checkpoint_files import CheckpointRefusedError, find_resumable_checkpoint
from mmdynamixer.models import DynaMixerNet
from mmdynamixer.models.block import DynaMixerBlock
from mmdynamixer.models.mixing import DynaMixerOp
from mmdynamixer.testing import tool_env, upstream_tool, write_image_folder

DEMO = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'
SMALL_ARCH = dict(layers=[1, 1], embed_dims=[16, 32], resolutions=[8, 4], num_segments=[4, 8], reduced_dims=[2, 2],
                  transitions=[True, False], mlp_ratios=[2, 2])


def tiny_run_options(data: Path, work: Path) -> dict:
    """The demo config on a 4-class generated folder: 1 epoch of 4 iterations, no loader workers."""
    # A unique experiment name: mmengine keys its logger by it, and a second Runner would log into the first's file.
    options = {'work_dir': str(work), 'experiment_name': f'{work.parent.name}_{work.name}', 'model.head.num_classes': 4,
               'data_preprocessor.num_classes': 4, 'train_cfg.max_epochs': 1, 'default_hooks.logger.interval': 1,
               'train_dataloader.batch_size': 8}
    for split in ('train', 'val', 'test'):
        options.update({f'{split}_dataloader.dataset.data_root': str(data), f'{split}_dataloader.num_workers': 0,
                        f'{split}_dataloader.persistent_workers': False})
    return options


def tiny_run_cfg(repo: Path, data: Path, work: Path, **options) -> Config:
    cfg = Config.fromfile(str(repo / DEMO))
    cfg.merge_from_dict({**tiny_run_options(data, work), **options})
    return cfg


def build(registry: str, cfg: dict):
    """Build from mmpretrain's ``registry`` ('MODELS', 'DATASETS'), whatever default scope earlier tests left."""
    import mmpretrain.registry
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return getattr(mmpretrain.registry, registry).build(cfg)


def build_runner(cfg: Config):
    """The Runner the config names (``runner_type``), as the toolboxes' tools build it."""
    return RUNNERS.build(cfg)


def write_training_checkpoint(path: Path, iteration: int, **extra) -> Path:
    torch.save({'meta': {'iter': iteration}, 'state_dict': {'w': torch.full((256,), float(iteration))},
                'optimizer': {}, **extra}, path)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


# ---------------------------------------------------------------- checkpoints

KILL_HOOK = '''
import os, resource, signal
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillDuringSecondSave(Hook):
    """After the first checkpoint, cap file sizes at half of it: the kernel then kills this process
    (SIGXFSZ, whose default action Python turns off) in the middle of writing the second."""
    priority = 'LOWEST'  # after CheckpointHook

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == 0:
            size = os.path.getsize(os.path.join(runner.work_dir, 'iter_1.pth')) // 2
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
'''


def test_kill_during_save_keeps_last_checkpoint_and_resume_continues(tmp_path, repo, tiny_imagenet):
    """max_keep_ckpts=1 is the hard case: mmengine deletes the only checkpoint before writing the next. Trained with
    mmpretrain's own tools/train.py: the config's AtomicCheckpointHook and DynaMixerRunner do the work."""
    work = tmp_path / 'work'
    every_iteration = {'default_hooks.checkpoint.by_epoch': False, 'default_hooks.checkpoint.interval': 1,
                       'default_hooks.checkpoint.max_keep_ckpts': 1}
    (tmp_path / 'kill_during_save.py').write_text(KILL_HOOK)
    cfg = tiny_run_cfg(repo, tiny_imagenet, work, **every_iteration)
    cfg.custom_imports = dict(imports=['mmdynamixer', 'kill_during_save'], allow_failed_imports=False)
    cfg.custom_hooks.append(dict(type='KillDuringSecondSave'))
    cfg.dump(str(tmp_path / 'killed.py'))
    env = tool_env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]))

    killed = subprocess.run([sys.executable, str(upstream_tool('mmpretrain', 'train.py')), str(tmp_path / 'killed.py')],
                            cwd=repo, env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr[-3000:]
    assert 'Saving checkpoint at 2 iterations' in killed.stdout + killed.stderr
    # The previous checkpoint and the pointer to it are intact; the interrupted one never got its name.
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_1.pth')
    with mmengine_checkpoint_loading():
        assert torch.load(work / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
    assert not (work / 'iter_2.pth').exists()
    assert len(list(work.glob('.iter_2.pth.*.tmp'))) == 1
    assert find_resumable_checkpoint(str(work)) == str(work / 'iter_1.pth')

    cfg = tiny_run_cfg(repo, tiny_imagenet, work, **every_iteration)
    cfg.resume = True
    runner = build_runner(cfg)
    runner.train()
    assert 'resumed epoch: 0, iter: 1' in next(work.glob(f'{runner.timestamp}/*.log')).read_text()
    assert runner.iter == 4
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')
    assert not list(work.glob('.*.tmp')), 'the resumed run saving iter_2.pth again removes the leftover'


BEST_KILL_HOOK = '''
import os, resource, signal
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, METRICS


@METRICS.register_module()
class EvaluationCount(BaseMetric):
    """A score that improves at every evaluation, so that each one saves a new best checkpoint."""
    count = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        EvaluationCount.count += 1
        return {'count': EvaluationCount.count}


@HOOKS.register_module()
class KillDuringSecondBestSave(Hook):
    """Once the first best checkpoint is saved, cap file sizes at half of it: the kernel kills this process
    (SIGXFSZ) in the middle of writing the second."""
    priority = 'LOWEST'  # after CheckpointHook's save of the best

    def after_val_epoch(self, runner, metrics=None):
        best = [name for name in os.listdir(runner.work_dir) if name.startswith('best_')]
        if runner.epoch == 1 and best:
            size = os.path.getsize(os.path.join(runner.work_dir, best[0])) // 2
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
'''


def test_kill_during_best_save_keeps_previous_best(tmp_path, repo, tiny_imagenet, monkeypatch):
    """save_best: mmengine removes the previous best before writing the new one; AtomicCheckpointHook removes it
    only once the new one is complete, so a kill (or a full disk) in between leaves the previous best intact."""
    work = tmp_path / 'work'
    best_only = {'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 100,
                 'default_hooks.checkpoint.save_last': False,
                 'default_hooks.checkpoint.save_best': 'count', 'default_hooks.checkpoint.rule': 'greater'}
    (tmp_path / 'kill_during_best_save.py').write_text(BEST_KILL_HOOK)
    cfg = tiny_run_cfg(repo, tiny_imagenet, work, **best_only)
    cfg.val_evaluator = dict(type='EvaluationCount')
    cfg.custom_imports = dict(imports=['mmdynamixer', 'kill_during_best_save'], allow_failed_imports=False)
    cfg.custom_hooks.append(dict(type='KillDuringSecondBestSave'))
    cfg.dump(str(tmp_path / 'killed.py'))
    env = tool_env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]))

    killed = subprocess.run([sys.executable, str(upstream_tool('mmpretrain', 'train.py')), str(tmp_path / 'killed.py')],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGXFSZ, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert re.search(r'Epoch\(val\) \[2\]\[\d+/\d+\]\s+count: 2', killed.stdout)
    assert sorted(p.name for p in work.glob('*.pth')) == ['best_count_epoch_1.pth']
    with mmengine_checkpoint_loading():
        assert torch.load(work / 'best_count_epoch_1.pth', weights_only=True)['meta']['epoch'] == 1
    assert len(list(work.glob('.best_count_epoch_2.pth.*.tmp'))) == 1

    # Without the kill, each new best replaces the previous one: one best checkpoint, the last.
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'uninterrupted', **best_only)
    cfg.val_evaluator = dict(type='EvaluationCount')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module('kill_during_best_save')  # registers EvaluationCount, as custom_imports does in a tool
    build_runner(cfg).train()
    assert sorted(p.name for p in (tmp_path / 'uninterrupted').glob('*.pth')) == ['best_count_epoch_2.pth']


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import save_checkpoint
    atomic = dict(backend='atomic_local')  # what AtomicCheckpointHook passes
    path = tmp_path / 'epoch_1.pth'
    save_checkpoint({'state_dict': {'w': torch.ones(4)}}, str(path), backend_args=atomic)

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(OSError, match='No space left'):
        save_checkpoint({'state_dict': {'w': torch.zeros(4)}}, str(path), backend_args=atomic)
    with mmengine_checkpoint_loading():
        torch.testing.assert_close(torch.load(path, weights_only=True)['state_dict']['w'], torch.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']


@pytest.fixture
def checkpoint_folder(tmp_path):
    """epoch_1 and epoch_2 intact (in that order), a newer best checkpoint without optimizer state."""
    for i in (1, 2):
        write_training_checkpoint(tmp_path / f'epoch_{i}.pth', i)
        os.utime(tmp_path / f'epoch_{i}.pth', (1000 + i, 1000 + i))
    torch.save({'meta': {}, 'state_dict': {}}, tmp_path / 'best_accuracy_top1_epoch_2.pth')
    return tmp_path


@pytest.fixture
def caplog_mmengine(caplog):
    """Records what mmengine's current logger writes, as caplog does for the root logger."""
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_resume_from_intact_pointer_target(checkpoint_folder):
    (checkpoint_folder / 'last_checkpoint').write_text(str(checkpoint_folder / 'epoch_1.pth'))
    assert find_resumable_checkpoint(str(checkpoint_folder)) == str(checkpoint_folder / 'epoch_1.pth')


def test_resume_skips_truncated_checkpoint(checkpoint_folder, caplog_mmengine):
    broken = truncate(write_training_checkpoint(checkpoint_folder / 'epoch_3.pth', 3))
    (checkpoint_folder / 'last_checkpoint').write_text(str(broken))
    assert find_resumable_checkpoint(str(checkpoint_folder)) == str(checkpoint_folder / 'epoch_2.pth')
    assert re.search(rf"names '{re.escape(str(broken))}', which cannot be resumed \(.*unreadable \(RuntimeError",
                     caplog_mmengine.text)


@pytest.mark.parametrize('pointer', ['', '\n', 'missing'])
def test_resume_with_empty_or_dangling_pointer_takes_newest_intact(checkpoint_folder, pointer):
    (checkpoint_folder / 'last_checkpoint').write_text(str(checkpoint_folder / pointer) if pointer.strip() else pointer)
    assert find_resumable_checkpoint(str(checkpoint_folder)) == str(checkpoint_folder / 'epoch_2.pth')


def test_resume_without_intact_checkpoint_fails(tmp_path):
    truncate(write_training_checkpoint(tmp_path / 'epoch_2.pth', 2))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    with pytest.raises(RuntimeError, match=r"(?s)Cannot resume: .*last_checkpoint names '.*epoch_3.pth'.*"
                                           r"epoch_3.pth: no such file.*epoch_2.pth: unreadable.*--resume PATH"):
        find_resumable_checkpoint(str(tmp_path))


def test_resume_without_pointer_warns_and_starts_fresh(tmp_path, caplog_mmengine):
    assert find_resumable_checkpoint(str(tmp_path)) is None
    warned = [r.getMessage() for r in caplog_mmengine.records if r.levelno == logging.WARNING]
    assert any(f'no checkpoint to resume from in the work dir {tmp_path} (looked for last_checkpoint' in message
               for message in warned), warned


class _Unknown:
    """A type no allow-list knows."""


@pytest.mark.parametrize('content', ['unknown type', 'no optimizer'])
def test_pointer_to_refused_checkpoint_stops_instead_of_falling_back(checkpoint_folder, content):
    refused = checkpoint_folder / 'epoch_3.pth'
    if content == 'unknown type':
        write_training_checkpoint(refused, 3, extra=_Unknown())
        reason = r'holds objects that weights-only loading refuses .*Unsupported global'
    else:
        torch.save({'meta': {'iter': 3}, 'state_dict': {}}, refused)
        reason = r'is not a training checkpoint \(no optimizer\)'
    (checkpoint_folder / 'last_checkpoint').write_text(str(refused))
    with pytest.raises(CheckpointRefusedError, match=rf'Cannot resume from {re.escape(str(refused))}: it {reason}'):
        find_resumable_checkpoint(str(checkpoint_folder))


@pytest.mark.parametrize('problem', ['missing', 'folder', 'truncated', 'unknown type'])
def test_resume_path_checked_before_anything_is_built(tmp_path, repo, tiny_imagenet, problem):
    """tools/train.py --resume PATH sets resume=True and load_from=PATH: a PATH that cannot be resumed from stops
    the Runner's construction, before the work dir, the model or the data exist."""
    path = tmp_path / 'epoch_3.pth'
    if problem == 'folder':
        path.mkdir()
    elif problem == 'truncated':
        truncate(write_training_checkpoint(path, 3))
    elif problem == 'unknown type':
        write_training_checkpoint(path, 3, extra=_Unknown())
    expected = {'missing': (FileNotFoundError, 'the checkpoint does not exist'),
                'folder': (FileNotFoundError, 'the checkpoint is a folder'),
                'truncated': (ValueError, r'the checkpoint cannot be resumed from, it is unreadable \(RuntimeError'),
                'unknown type': (CheckpointRefusedError, 'holds objects that weights-only loading refuses')}[problem]
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'work', resume=True, load_from=str(path))
    with pytest.raises(expected[0], match=expected[1]) as error:
        build_runner(cfg)
    assert str(path) in str(error.value)
    assert not (tmp_path / 'work').exists()


def test_missing_load_from_checked_before_anything_is_built(tmp_path, repo, tiny_imagenet):
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'work', load_from=str(tmp_path / 'absent.pth'))
    with pytest.raises(FileNotFoundError, match=rf"load_from='{re.escape(str(tmp_path))}/absent.pth': the checkpoint "
                                                r'does not exist'):
        build_runner(cfg)
    assert not (tmp_path / 'work').exists()


def test_checkpoint_of_another_model_is_refused(tmp_path, repo, tiny_imagenet):
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'work')
    cfg.load_from = str(write_training_checkpoint(tmp_path / 'resnet.pth', 1, state_dict={
        'backbone.conv1.weight': torch.ones(64, 3, 7, 7), 'backbone.bn1.weight': torch.ones(64)}))
    with pytest.raises(ValueError, match=r"holds none of the model's \d+ tensors \(a checkpoint of another model\?\): "
                                         r"it has e.g. \['backbone.conv1.weight'"):
        build_runner(cfg).test()


@pytest.mark.parametrize('mode', ['load_from', 'resume'])
def test_checkpoint_of_other_shapes_names_every_key(tmp_path, repo, tiny_imagenet, mode):
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / f'work_{mode}')
    other = copy.deepcopy(cfg.model)
    other.backbone.arch.reduced_dims = [1, 1, 1, 1]  # every compress and generate layer changes shape
    other.head.num_classes = 7
    saved = build('MODELS', other).state_dict()
    expected = build('MODELS', cfg.model).state_dict()
    differing = {key: (tuple(value.shape), tuple(expected[key].shape)) for key, value in saved.items()
                 if value.shape != expected[key].shape}
    assert len(differing) == 3 * 2 * 5 + 2  # compress weight and bias, generate weight; 2 ops x 5 layers; head
    path = write_training_checkpoint(tmp_path / 'other.pth', 1, state_dict={f'module.{k}': v for k, v in saved.items()})

    cfg.load_from, cfg.resume = str(path), mode == 'resume'
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match=rf'{len(differing)} tensor\(s\) differ in shape') as error:
        runner.train() if mode == 'resume' else runner.test()
    for key, (in_checkpoint, in_model) in differing.items():
        assert f'  {key}: {in_checkpoint} in the checkpoint, {in_model} in the model\n' in str(error.value)


def test_checkpoint_of_same_shapes_loads(tmp_path, repo, tiny_imagenet):
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'work')
    model = build('MODELS', cfg.model)
    cfg.load_from = str(write_training_checkpoint(tmp_path / 'same.pth', 1, state_dict=model.state_dict()))
    runner = build_runner(cfg)
    assert 'accuracy/top1' in runner.test()
    torch.testing.assert_close(runner.model.state_dict(), model.state_dict())


# ---------------------------------------------------------------- mixed precision

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('scale', [1.0, 1e2, 1e4])
def test_mixing_weights_stay_distributions_under_autocast(dtype, scale):
    """With ``out`` the identity, a channel that is constant over the tokens comes out unchanged exactly when
    each token's mixing weights are finite and sum to one; inputs up to 1e4."""
    torch.manual_seed(0)
    op = DynaMixerOp(dim=32, seq_len=8, num_segments=4, reduced_dim=2)
    with torch.no_grad():
        op.out.weight.copy_(torch.eye(32))
        op.out.bias.zero_()
    x = torch.randn(2, 8, 32) * scale
    x[..., ::8] = scale  # channel 0 of each of the 4 segments
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        y = op(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[..., ::8].float(), x[..., ::8], rtol=2e-2, atol=0)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_block_and_model_finite_under_autocast(dtype):
    torch.manual_seed(0)
    block = DynaMixerBlock(dim=32, seq_len=8, num_segments=4, reduced_dim=2)
    model = DynaMixerNet(SMALL_ARCH, num_classes=10).eval()
    for scale in (1.0, 1e2, 1e4):
        with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
            assert torch.isfinite(block(torch.randn(2, 8, 8, 32) * scale)).all(), scale
            assert torch.isfinite(model(torch.randn(2, 3, 56, 56) * scale)).all(), scale
            assert torch.isfinite(model(torch.randn(2, 3, 45, 70) * scale)).all(), scale  # windowed path


def test_float16_logits_would_overflow_without_float32_generate():
    """The release's forward, where ``generate`` runs in float16 under autocast, gives non-finite output once
    the mixing logits pass float16's 65504; ours, with the same weights, stays finite and close to float32."""
    from mmdynamixer.release_reference import RefOp
    torch.manual_seed(0)
    op = DynaMixerOp(dim=32, seq_len=8, num_segments=4, reduced_dim=2)
    with torch.no_grad():
        op.generate.weight.normal_(0, 3.0)  # large generate weights: logits of order 1e5 for inputs of 1e4
    ref = RefOp(32, 8, 4, 2)
    ref.load_state_dict(op.state_dict())
    x = torch.randn(2, 8, 32) * 1e4
    with torch.no_grad():
        expected = op(x)
        with torch.autocast('cpu', dtype=torch.float16):
            assert not torch.isfinite(ref(x)).all()
            ours = op(x)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), expected, rtol=2e-2, atol=expected.abs().max().item() * 5e-3)


class PoisonWeights(Hook):
    """Sets the head's bias to NaN before the third iteration."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 2:
            runner.model.head.fc.bias.data.fill_(math.nan)


def test_nan_loss_stops_runner_before_checkpointing(tmp_path, repo, tiny_imagenet):
    work = tmp_path / 'work'
    cfg = tiny_run_cfg(repo, tiny_imagenet, work, **{'default_hooks.checkpoint.by_epoch': False,
                                                    'default_hooks.checkpoint.interval': 1})
    runner = build_runner(cfg)
    runner.register_hook(PoisonWeights())
    with pytest.raises(FloatingPointError, match=r'Non-finite loss at iteration 3 \(epoch 1, batch 2\): loss=nan\.'):
        runner.train()
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_1.pth', 'iter_2.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')


# ---------------------------------------------------------------- datasets

def build_dataset(**cfg):
    return build('DATASETS', dict(pipeline=[], **cfg))


def test_imagenet_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"CheckedImageNet image folder '{tmp_path}/nowhere/train' "
                                                r"\(data_root='.*nowhere'\) does not exist; expected a folder with "
                                                r'one sub-folder per class holding the images, or an ann_file'):
        build_dataset(type='CheckedImageNet', data_root=str(tmp_path / 'nowhere'), split='train')


def test_imagenet_folder_is_a_file(tmp_path):
    (tmp_path / 'train').write_text('')
    with pytest.raises(FileNotFoundError, match=r"image folder '.*train' .* is not a folder"):
        build_dataset(type='CheckedImageNet', data_root=str(tmp_path), split='train')


def test_imagenet_folder_empty(tmp_path):
    (tmp_path / 'train').mkdir()
    with pytest.raises(ValueError, match=r"CheckedImageNet image folder '.*train' .* has no class sub-folders; expected"):
        build_dataset(type='CheckedImageNet', data_root=str(tmp_path), split='train')


def test_imagenet_folder_with_other_number_of_classes(tiny_imagenet):
    with pytest.raises(ValueError, match=r"has 4 class sub-folders \(n00000000, n00000001, n00000002, n00000003\) "
                                         r'but CheckedImageNet has 1000 classes; give it one sub-folder per class'):
        build_dataset(type='CheckedImageNet', data_root=str(tiny_imagenet), split='val')


def test_class_folders_without_images(tmp_path):
    for name in ('cat', 'dog'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'notes.txt').write_text('not an image')
    with pytest.raises(ValueError, match=r"CheckedCustomDataset image folder '.*' .* holds no image: no file with an "
                                         r"extension in \['.bmp', '.jpeg', '.jpg'"):
        build_dataset(type='CheckedCustomDataset', data_root=str(tmp_path))


def test_valid_folder_still_loads(tiny_imagenet):
    dataset = build_dataset(type='CheckedCustomDataset', data_root=str(tiny_imagenet), data_prefix='train')
    assert len(dataset) == 32 and len(dataset.metainfo['classes']) == 4


def test_tools_check_the_folder_before_training(tmp_path, repo):
    cfg = tiny_run_cfg(repo, tmp_path / 'nowhere', tmp_path / 'work')
    with pytest.raises(FileNotFoundError, match=r"CheckedCustomDataset image folder '.*nowhere/train' .* does not exist"):
        build_runner(cfg).train()


def write_broken_images(folder: Path) -> list:
    """A garbage file, an empty file and a truncated JPEG, each named .JPEG."""
    good = sorted(folder.glob('*.JPEG'))[0].read_bytes()
    broken = {'garbage.JPEG': b'this is not an image' * 10, 'empty.JPEG': b'', 'truncated.JPEG': good[:len(good) // 2]}
    for name, data in broken.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in broken]


@pytest.fixture
def broken_imagenet(tmp_path):
    root = write_image_folder(tmp_path / 'broken', num_classes=4, per_class=4)
    return root, write_broken_images(root / 'train' / 'n00000001') + write_broken_images(root / 'val' / 'n00000002')


def test_unreadable_image_error_names_file(broken_imagenet):
    _, broken = broken_imagenet
    load = CheckedLoadImageFromFile()
    for path in broken:
        with pytest.raises(OSError, match=rf"Unreadable image {re.escape(str(path))} \(.+\)\. Replace or remove the "
                                          r"file, or set on_unreadable='skip'"):
            load(dict(img_path=str(path)))
    with pytest.raises(OSError, match=r'Unreadable image .*absent.JPEG \(FileNotFoundError'):
        load(dict(img_path=str(broken[0].parent / 'absent.JPEG')))


def test_unreadable_image_skipped_with_count(broken_imagenet, caplog_mmengine):
    root, broken = broken_imagenet
    load = CheckedLoadImageFromFile(on_unreadable='skip', imdecode_backend='pillow')
    good = load(dict(img_path=str(root / 'train' / 'n00000000' / 'train_0_0.JPEG')))
    assert good['img'].shape == (56, 56, 3)
    assert [load(dict(img_path=str(path))) for path in broken] == [None] * len(broken)
    for count, path in enumerate(broken, 1):
        assert re.search(rf'Skipped unreadable image {re.escape(str(path))} \(.+\); {count} unreadable image\(s\) '
                         rf'skipped so far by this data-loading process', caplog_mmengine.text)
    assert all(r.levelno == logging.WARNING for r in caplog_mmengine.records if 'Skipped' in r.getMessage())


def test_unreadable_policy_values():
    with pytest.raises(ValueError, match=r"on_unreadable='ignore'; allowed: \('skip', 'error'\)"):
        CheckedLoadImageFromFile(on_unreadable='ignore')
    with pytest.raises(ValueError, match="ignore_empty=True skips unreadable images without a trace"):
        CheckedLoadImageFromFile(ignore_empty=True)


def loading(policy: str) -> list:
    return [dict(type='CheckedLoadImageFromFile', on_unreadable=policy), dict(type='PackInputs')]


def test_training_skips_unreadable_images(tmp_path, repo, broken_imagenet):
    root, broken = broken_imagenet
    work = tmp_path / 'work'
    cfg = tiny_run_cfg(repo, root, work, **{'train_dataloader.dataset.pipeline': loading('skip'),
                                            'val_dataloader.dataset.pipeline': loading('skip'),
                                            'train_dataloader.batch_size': 4})
    build_runner(cfg).train()
    log = next(work.glob('*/*.log')).read_text()
    assert re.search(r'Epoch\(train\) \[1\]\[5/5\]', log)  # 16 good + 3 broken images, batches of 4
    for path in broken:
        assert re.search(rf'WARNING - Skipped unreadable image {re.escape(str(path))} .*\d+ unreadable image', log)


def test_evaluation_stops_at_unreadable_image(tmp_path, repo, broken_imagenet):
    root, _ = broken_imagenet
    cfg = tiny_run_cfg(repo, root, tmp_path / 'work', **{'test_dataloader.dataset.pipeline': loading('error')})
    with pytest.raises(OSError, match=r'Unreadable image .*/val/n00000002/(garbage|empty|truncated)\.JPEG'):
        build_runner(cfg).test()


def test_skipping_refused_in_test_mode(tmp_path, repo, tiny_imagenet):
    cfg = tiny_run_cfg(repo, tiny_imagenet, tmp_path / 'work', **{'test_dataloader.dataset.test_mode': True,
                                                                  'test_dataloader.dataset.pipeline': loading('skip')})
    with pytest.raises(ValueError, match=r"test_dataloader: CheckedLoadImageFromFile has on_unreadable='skip' in a "
                                         r'dataset with test_mode=True'):
        build_runner(cfg)


def test_recipe_skips_in_training_and_stops_in_evaluation(repo):
    cfg = Config.fromfile(str(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py'))
    assert cfg.train_dataloader.dataset.pipeline[0] == dict(type='CheckedLoadImageFromFile', on_unreadable='skip')
    assert cfg.test_dataloader.dataset.pipeline[0] == dict(type='CheckedLoadImageFromFile', on_unreadable='error')
