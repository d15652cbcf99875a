"""The bfloat16 recipe variants: the same recipe with bfloat16 autocast and no loss scaling; float16 with a dynamic
loss scaler stays the reproduction default. mmengine's AmpOptimWrapper needs CUDA, so CUDA's presence is faked
where the wrapper itself is built, and the DynaMixerRunner's float32 fallback is checked without it."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper

from conftest import REPO
from mmdynamixer.testing import TINY_ARCH

CONFIGS = REPO / 'configs/dynamixer'
RECIPES = {'s': 'dynamixer-s_8xb256', 'm': 'dynamixer-m_8xb128', 'l': 'dynamixer-l_8xb64'}


def load(arch: str, bf16: bool) -> Config:
    return Config.fromfile(str(CONFIGS / f'{RECIPES[arch]}{"-bf16" if bf16 else ""}_in1k.py'))


def without_precision(cfg: Config) -> dict:
    content = cfg.to_dict()
    content['optim_wrapper'] = {k: v for k, v in content['optim_wrapper'].items() if k not in ('dtype', 'loss_scale')}
    return content


@pytest.mark.parametrize('arch', sorted(RECIPES))
def test_variant_changes_only_the_precision(arch):
    recipe, variant = load(arch, bf16=False), load(arch, bf16=True)
    assert recipe.optim_wrapper.type == variant.optim_wrapper.type == 'AmpOptimWrapper'
    assert recipe.optim_wrapper.loss_scale == 'dynamic' and 'dtype' not in recipe.optim_wrapper
    assert variant.optim_wrapper.dtype == 'bfloat16' and variant.optim_wrapper.loss_scale == dict(enabled=False)
    assert without_precision(variant) == without_precision(recipe)


@pytest.fixture
def fake_cuda(monkeypatch):
    """A GPU machine as mmengine and torch see it: AmpOptimWrapper and its GradScaler build, and mmengine's
    autocast (whose device mmengine fixes at import) targets CUDA on a bfloat16-capable device."""
    import mmengine.runner.amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)  # mmengine's logger looks up the device id
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: True)
    monkeypatch.setattr(mmengine.runner.amp, 'get_device', lambda: 'cuda')


def test_bf16_wrapper_casts_to_bfloat16_and_does_not_scale_the_loss(fake_cuda):
    model = torch.nn.Linear(4, 2)
    bf16 = build_optim_wrapper(model, load('s', bf16=True).optim_wrapper)
    fp16 = build_optim_wrapper(model, load('s', bf16=False).optim_wrapper)
    assert type(bf16) is AmpOptimWrapper and type(fp16) is AmpOptimWrapper
    assert bf16.cast_dtype is torch.bfloat16
    assert fp16.cast_dtype is None  # torch's CUDA autocast default, float16
    loss = torch.tensor(1.5)
    assert bf16.loss_scaler.scale(loss) is loss and not bf16.loss_scaler.is_enabled()
    assert fp16.loss_scaler.scale(loss).item() == 1.5 * 2.0 ** 16  # the default's dynamic scaler, at its start


def test_training_context_autocasts_cuda_to_the_configured_dtype(fake_cuda, monkeypatch):
    calls = []

    class RecordingAutocast:
        def __init__(self, *args, **kwargs):
            calls.append(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    model = torch.nn.Linear(4, 2)
    wrappers = {bf16: build_optim_wrapper(model, load('s', bf16=bf16).optim_wrapper) for bf16 in (True, False)}
    monkeypatch.setattr(torch, 'autocast', RecordingAutocast)
    for bf16, wrapper in wrappers.items():
        with wrapper.optim_context(model):
            pass
    assert [(call['device_type'], call['dtype'], call['enabled']) for call in calls] == [
        ('cuda', torch.bfloat16, True), ('cuda', torch.float16, True)]


def test_runner_trains_the_bf16_variant_in_float32_without_cuda(tmp_path, monkeypatch):
    from mmdynamixer.engine import DynaMixerRunner
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = load('s', bf16=True)
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.in_channels = 32
    runner = DynaMixerRunner.from_cfg(cfg)
    with pytest.warns(UserWarning, match=r"optim_wrapper.type='AmpOptimWrapper' \(mixed precision\) needs CUDA"):
        wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    assert type(wrapper) is OptimWrapper
    assert [group['lr'] for group in wrapper.optimizer.param_groups][0] == 2e-3
