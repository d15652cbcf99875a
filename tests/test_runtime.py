"""What the engine adds to mmengine without patching it: weights-only loading of its checkpoints, the runner's
CPU fallbacks and protective hooks, the finite-loss hook; and that importing mmdynamixer patches nothing."""
import io
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from mmdynamixer.engine import DynaMixerRunner, FiniteLossHook, allow_mmengine_checkpoint_types
from mmdynamixer.testing import write_image_folder

DIGITS = Path(__file__).resolve().parents[1] / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'


class _Escape:
    """Pickles as getattr(HistoryBuffer, '__init__'): an attribute walk that must stay refused."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_message_hub_state_loads_weights_only():
    allow_mmengine_checkpoint_types()
    hub = MessageHub.get_instance('test_runtime')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('epoch', 3)
    buffer = io.BytesIO()
    torch.save({'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(2)}}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5


def test_other_getattr_stays_refused():
    allow_mmengine_checkpoint_types()
    buffer = io.BytesIO()
    torch.save({'x': _Escape()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="refusing getattr.*'__init__'"):
        torch.load(buffer, weights_only=True)


def test_non_finite_loss_stops_with_iteration_and_terms():
    from types import SimpleNamespace
    hook, runner = FiniteLossHook(), SimpleNamespace(iter=41, epoch=2)
    hook.after_train_iter(runner, 5, outputs={'loss': torch.tensor(1.5), 'loss_cls': torch.tensor(1.5)})
    outputs = {'loss': torch.tensor(float('nan')), 'loss_cls': torch.tensor(float('inf')), 'accuracy': torch.tensor(0.)}
    with pytest.raises(FloatingPointError, match=r'iteration 42 \(epoch 3, batch 5\): loss=nan, loss_cls=inf\.'):
        hook.after_train_iter(runner, 5, outputs=outputs)


def test_import_patches_no_mmengine_or_mmpretrain_code():
    """Everything is registered through extension points: mmengine's and mmpretrain's own functions stay theirs."""
    import mmdynamixer  # noqa: F401
    from mmengine.fileio.backends import LocalBackend
    from mmengine.hooks import CheckpointHook, checkpoint_hook
    from mmengine.runner import Runner, runner
    from mmpretrain.datasets import CustomDataset

    owners = {LocalBackend.put: 'mmengine.fileio.backends.local_backend',
              CheckpointHook._save_checkpoint_with_step: 'mmengine.hooks.checkpoint_hook',
              runner.find_latest_checkpoint: 'mmengine.runner.checkpoint',
              Runner.load_or_resume: 'mmengine.runner.runner', Runner.setup_env: 'mmengine.runner.runner',
              CustomDataset._find_samples: 'mmpretrain.datasets.custom'}
    assert {f.__qualname__: f.__module__ for f in owners} == {f.__qualname__: m for f, m in owners.items()}
    assert 'open' not in vars(checkpoint_hook)


@pytest.fixture
def tiny_runner_cfg(tmp_path):
    """The digits config on a generated 4-class folder, no workers, in a fresh work dir."""
    data = write_image_folder(tmp_path / 'data', num_classes=4, per_class=2)
    cfg = Config.fromfile(str(DIGITS))
    options = {'work_dir': str(tmp_path / 'work'), 'experiment_name': f'runtime_{tmp_path.name}',
               'model.head.num_classes': 4, 'data_preprocessor.num_classes': 4}
    for split in ('train', 'val', 'test'):
        options.update({f'{split}_dataloader.dataset.data_root': str(data), f'{split}_dataloader.num_workers': 0,
                        f'{split}_dataloader.persistent_workers': False})
    cfg.merge_from_dict(options)
    return cfg


def test_config_names_the_runner(tiny_runner_cfg):
    from mmengine.registry import RUNNERS
    assert type(RUNNERS.build(tiny_runner_cfg)) is DynaMixerRunner


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_amp_becomes_float32_without_cuda(tiny_runner_cfg):
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    runner = DynaMixerRunner.from_cfg(tiny_runner_cfg)
    assert tiny_runner_cfg.optim_wrapper.type == 'AmpOptimWrapper'  # the recipe's
    with pytest.warns(UserWarning, match=r"optim_wrapper.type='AmpOptimWrapper' \(mixed precision\) needs CUDA"):
        wrapper = runner.build_optim_wrapper(tiny_runner_cfg.optim_wrapper)
    assert type(wrapper) is OptimWrapper and not isinstance(wrapper, AmpOptimWrapper)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a float32 config builds as it is, silently
        plain = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
        assert type(runner.build_optim_wrapper(plain)) is OptimWrapper


def test_runner_adds_protective_hooks_once(tiny_runner_cfg):
    tiny_runner_cfg.custom_hooks = [dict(type='EMAHook', momentum=0.02)]
    names = [type(hook).__name__ for hook in DynaMixerRunner.from_cfg(tiny_runner_cfg).hooks]
    assert names.count('FiniteLossHook') == names.count('CheckpointShapeCheckHook') == 1
    assert 'EMAHook' in names and 'AtomicCheckpointHook' in names and 'CheckpointHook' not in names

    tiny_runner_cfg.default_hooks.finite_loss = dict(type='FiniteLossHook', priority='LOWEST')
    runner = DynaMixerRunner.from_cfg(tiny_runner_cfg)
    finite = [hook for hook in runner.hooks if isinstance(hook, FiniteLossHook)]
    from mmengine.runner import get_priority
    assert len(finite) == 1 and get_priority(finite[0].priority) == 100  # the config's, with its priority


def test_launchers_other_than_pytorch_refused_without_cuda(tiny_runner_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    tiny_runner_cfg.launcher = 'slurm'
    with pytest.raises(RuntimeError, match=r"launcher='slurm' without CUDA is not supported; use the pytorch launcher"):
        DynaMixerRunner.from_cfg(tiny_runner_cfg)
