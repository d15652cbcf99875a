"""What the engine adds to mmengine without patching it: weights-only loading of its checkpoints within a context,
the runner's CPU fallbacks and protective hooks, the finite-loss hook; and that importing mmdynamixer changes no
function of torch or the toolboxes and no process-wide state, and imports each library only once it is used."""
import datetime
import io
import json
import pickle
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from mmdynamixer.engine import DynaMixerRunner, FiniteLossHook, mmengine_checkpoint_loading
from mmdynamixer.testing import write_image_folder

DIGITS = Path(__file__).resolve().parents[1] / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'


class _Escape:
    """Pickles as getattr(HistoryBuffer, '__init__'): an attribute walk that must stay refused."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def _saved(obj) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def _mmengine_checkpoint() -> io.BytesIO:
    hub = MessageHub.get_instance('test_runtime')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('epoch', 3)
    return _saved({'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(2)}})


def test_message_hub_state_loads_weights_only_within_the_context_only():
    before = set(torch.serialization.get_safe_globals())
    with mmengine_checkpoint_loading():
        loaded = torch.load(_mmengine_checkpoint(), weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(_mmengine_checkpoint(), weights_only=True)


def test_nested_contexts_keep_the_outer_allow_list():
    with mmengine_checkpoint_loading():
        with mmengine_checkpoint_loading():
            pass
        assert torch.load(_mmengine_checkpoint(), weights_only=True)['state_dict']['w'].sum() == 2


def test_other_getattr_stays_refused():
    with mmengine_checkpoint_loading(), pytest.raises(pickle.UnpicklingError, match="refusing getattr.*'__init__'"):
        torch.load(_saved({'x': _Escape()}), weights_only=True)
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global: GLOBAL getattr was not an allowed global'):
        torch.load(_saved({'x': _Escape()}), weights_only=True)  # torch's own refusal, not ours


def test_non_finite_loss_stops_with_iteration_and_terms():
    from types import SimpleNamespace
    hook, runner = FiniteLossHook(), SimpleNamespace(iter=41, epoch=2)
    hook.after_train_iter(runner, 5, outputs={'loss': torch.tensor(1.5), 'loss_cls': torch.tensor(1.5)})
    outputs = {'loss': torch.tensor(float('nan')), 'loss_cls': torch.tensor(float('inf')), 'accuracy': torch.tensor(0.)}
    with pytest.raises(FloatingPointError, match=r'iteration 42 \(epoch 3, batch 5\): loss=nan, loss_cls=inf\.'):
        hook.after_train_iter(runner, 5, outputs=outputs)


# Run in a fresh process: every function of torch and of the toolboxes' modules that mmdynamixer builds on
# (classes' methods included), and torch's weights-only allow-list, before and after `import mmdynamixer`.
IMPORT_CHANGES_NOTHING = '''
import importlib, inspect, json
import torch

# torch._dynamo first: importing it wraps torch.manual_seed (torch/_dynamo/__init__.py), torch's own doing.
MODULES = ['torch._dynamo', 'torch', 'torch.serialization', 'torch.nn', 'mmengine.runner', 'mmengine.runner.checkpoint',
           'mmengine.hooks', 'mmengine.fileio', 'mmengine.fileio.backends', 'mmengine.model', 'mmengine.registry',
           'mmengine.dataset', 'mmcv.transforms', 'mmpretrain.datasets', 'mmpretrain.models', 'mmpretrain.models.backbones',
           'mmdet.models', 'mmdet.datasets', 'mmseg.models', 'mmseg.models.decode_heads', 'timm.models']


def functions():
    """{dotted name: (function, code object)} for each module-level function and class method of MODULES."""
    found = {}
    for module_name in MODULES:
        for name, value in vars(importlib.import_module(module_name)).items():
            members = vars(value).items() if inspect.isclass(value) else [('', value)]
            for member_name, member in members:
                member = getattr(member, '__func__', member)  # staticmethod, classmethod
                if inspect.isfunction(member):
                    found[f'{module_name}.{name}.{member_name}'.rstrip('.')] = (member, member.__code__)
    return found


before, allowed = functions(), set(torch.serialization.get_safe_globals())
import mmdynamixer  # noqa: E402
after = functions()
changed = [name for name, (function, code) in before.items()
           if name not in after or after[name][0] is not function or after[name][0].__code__ is not code]
print(json.dumps(dict(names=sorted(before), changed=changed,
                      safe_globals_unchanged=set(torch.serialization.get_safe_globals()) == allowed)))
'''


def test_import_changes_no_function_and_no_allow_list():
    """Everything is registered through extension points: after `import mmdynamixer` (what custom_imports does),
    torch's, mmengine's, mmcv's, mmpretrain's, mmdet's, mmseg's and timm's functions are the very objects, with the
    very code, they were before (a wrapper or a swapped __code__ would show), and torch's weights-only allow-list
    is unchanged."""
    run = subprocess.run([sys.executable, '-c', IMPORT_CHANGES_NOTHING], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    extended = ['mmengine.runner.Runner.load_or_resume', 'mmengine.runner.Runner.setup_env',
                'mmengine.hooks.CheckpointHook._save_best_checkpoint',
                'mmengine.hooks.CheckpointHook._save_checkpoint_with_step',
                'mmengine.runner.EpochBasedTrainLoop.run_epoch', 'mmengine.fileio.backends.LocalBackend.put',
                'mmengine.runner.checkpoint.find_latest_checkpoint', 'mmcv.transforms.LoadImageFromFile.transform',
                'mmpretrain.datasets.CustomDataset._find_samples', 'mmseg.models.decode_heads.FPNHead.forward',
                'torch.load', 'torch.serialization.add_safe_globals']
    assert set(extended) <= set(result['names']), set(extended) - set(result['names'])
    assert result['changed'] == []
    assert result['safe_globals_unchanged']


# Run in a fresh process: what `import mmdynamixer` imports, and each library's registrations in place once it is used.
LIBRARIES_WHEN_USED = '''
import json, sys
LIBRARIES = ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'timm')
def loaded():
    return sorted(name for name in LIBRARIES if name in sys.modules)
seen = {}
import mmdynamixer.models
seen['models'] = loaded()
import mmdynamixer
seen['mmdynamixer'] = loaded()
import timm
seen['timm_model'] = type(timm.create_model('dynamixer_s', num_classes=3)).__name__
seen['timm'] = loaded()
from mmdet.registry import MODELS  # an mmdet config's backbone: type='mmpretrain.DynaMixer'
arch = dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 32], resolutions=[8, 4, 4, 4], num_segments=[2, 4, 4, 4],
            reduced_dims=[2, 2, 2, 2], transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3])
seen['mmdet_backbone'] = type(MODELS.build(dict(type='mmpretrain.DynaMixer', arch=arch, out_indices=(0, 3)))).__name__
seen['mmdet'] = loaded()
from mmengine.registry import RUNNERS
seen['runner'] = RUNNERS.get('DynaMixerRunner').__name__
from mmseg.registry import MODELS as SEG_MODELS
seen['mmseg_head'] = SEG_MODELS.get('StrideFPNHead').__name__
seen['loaders'] = sorted({type(sys.modules[name].__loader__).__module__ for name in LIBRARIES})
print(json.dumps(seen))
'''


def test_import_costs_torch_alone_and_each_library_registers_when_used():
    """`import mmdynamixer` imports no toolbox and not timm; each library's registrations are in place as soon as that
    library is used (timm's models, the backbone an mmdet config names, the runner, mmseg's head), mmseg is never
    imported by a process that has not used it, and every library keeps its own loader."""
    run = subprocess.run([sys.executable, '-c', LIBRARIES_WHEN_USED], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen['models'] == [] and seen['mmdynamixer'] == []
    assert seen['timm'] == ['timm'] and seen['timm_model'] == 'TimmDynaMixer'
    assert seen['mmdet_backbone'] == 'DynaMixer' and 'mmseg' not in seen['mmdet']
    assert (seen['runner'], seen['mmseg_head']) == ('DynaMixerRunner', 'StrideFPNHead')
    assert 'mmdynamixer.registrations' not in seen['loaders']


def test_registers_in_a_library_that_registering_in_another_imports():
    """mmseg's tools import mmseg before the config imports mmdynamixer; registering in mmseg imports its models, which
    import mmpretrain: the backbone must still be registered there (it once was not, and mmseg's train.py failed)."""
    script = ('import sys\nimport mmengine.runner, mmseg.registry\nassert "mmpretrain" not in sys.modules\n'
              'import mmdynamixer\nfrom mmpretrain.registry import MODELS\nprint("DynaMixer" in MODELS.module_dict)')
    run = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == 'True'


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


@pytest.mark.skipif(torch.cuda.is_available(), reason='machine: has a CUDA GPU (this checks the CPU fallback)')
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


@pytest.fixture
def one_process_group_env(monkeypatch):
    """What tools/dist_train.sh's torch.distributed.run sets for 1 process, on a free port; no CUDA."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with socket.socket() as free:
        free.bind(('127.0.0.1', 0))
        port = free.getsockname()[1]
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_dist_cfg_on_cpu_is_read_as_mmengines_init_dist_reads_it(tiny_runner_cfg, one_process_group_env, monkeypatch):
    """The configs' dist_cfg (backend nccl) with mmengine's timeout in seconds: a gloo group with that timeout."""
    started, start = [], torch.distributed.init_process_group
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda **options: started.append(options) or
                        start(**options))
    tiny_runner_cfg.launcher = 'pytorch'
    tiny_runner_cfg.env_cfg.dist_cfg = dict(backend='nccl', timeout=1234)
    runner = DynaMixerRunner.from_cfg(tiny_runner_cfg)
    assert runner.world_size == 1 and torch.distributed.get_backend() == 'gloo'
    assert started == [dict(backend='gloo', timeout=datetime.timedelta(seconds=1234))]


@pytest.mark.parametrize('dist_cfg, error', [
    (dict(backend='nccl', timeout='30m'), r"env_cfg.dist_cfg.timeout='30m': the timeout is a number of seconds"),
    (dict(backend='hccl'), r"env_cfg.dist_cfg.backend='hccl' cannot run without CUDA: allowed \('gloo', 'mpi'\)"),
    (dict(backend='nccl', init_backend='deepspeed'),
     r"env_cfg.dist_cfg.init_backend='deepspeed' is not supported without CUDA: only 'torch'"),
])
def test_dist_cfg_that_cannot_apply_on_cpu_is_refused_by_name(tiny_runner_cfg, one_process_group_env, dist_cfg,
                                                              error):
    tiny_runner_cfg.launcher = 'pytorch'
    tiny_runner_cfg.env_cfg.dist_cfg = dist_cfg
    with pytest.raises((TypeError, ValueError), match=error):
        DynaMixerRunner.from_cfg(tiny_runner_cfg)
    assert not torch.distributed.is_initialized()
