"""The bfloat16 recipe variants (configs/dynamixer/*-bf16_in1k.py), trained for real on CPU.

mmengine 0.10.7's ``AmpOptimWrapper`` checks for a CUDA, NPU, MLU or MUSA device in its constructor only: its
GradScaler, its ``optim_context`` (mmengine's ``autocast``, on the device ``get_device()`` finds: here the CPU,
where it accepts bfloat16 only) and its update run on CPU. So the wrapper is built from the variant's own
``optim_wrapper`` with that one check answered yes, and all after it runs as is: torch's CPU bfloat16 autocast
around our model's forward, backward, AdamW. Not testable without a GPU: CUDA autocast (the reproduction recipe's
float16 default) and the dynamic loss scaler, which torch disables without CUDA.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmpretrain.structures import DataSample
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import REPO
from mmdynamixer.models.mixing import DynaMixerOp
from mmdynamixer.testing import TINY_ARCH, build_mmpretrain_model

CONFIGS = REPO / 'configs/dynamixer'
RECIPES = {'s': 'dynamixer-s_8xb256', 'm': 'dynamixer-m_8xb128', 'l': 'dynamixer-l_8xb64'}
MATMULS = ('mm', 'addmm', 'bmm', 'baddbmm', 'convolution')


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


class KernelDtypes(TorchDispatchMode):
    """Records each matmul, convolution, linear and softmax as it reaches the kernels (below autocast): its name,
    and the dtypes and shapes of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in MATMULS or 'linear' in name or 'softmax' in name:
            tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
            self.calls.append((name, {t.dtype for t in tensors}, {tuple(t.shape) for t in tensors}))
        return func(*args, **(kwargs or {}))


def tiny_classifier(cfg: Config) -> torch.nn.Module:
    """The config's classifier (data preprocessor, Mixup/CutMix, loss) on the tiny arch, as the Runner builds it."""
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.in_channels = 32
    return build_mmpretrain_model(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))


def batch(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, 56, 56), dtype=torch.uint8, generator=gen) for _ in range(4)],
                data_samples=[DataSample().set_gt_label(label) for label in (1, 7, 7, 999)])


def test_bf16_variant_trains_in_bfloat16_autocast_on_cpu_with_float32_weights(monkeypatch):
    torch.manual_seed(0)
    cfg = load('s', bf16=True)
    model = tiny_classifier(cfg)
    with monkeypatch.context() as patch:  # the constructor's device check, and nothing else
        patch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper) is AmpOptimWrapper and not wrapper.loss_scaler.is_enabled()

    model.train()
    data = model.data_preprocessor(batch(0), training=True)
    with wrapper.optim_context(model), KernelDtypes() as kernels:
        model(data['inputs'], mode='tensor')
    # ``generate``'s matmuls, told by its weight's shape (as is or transposed), which no other layer has.
    generate = {tuple(op.generate.weight.shape) for op in model.modules() if isinstance(op, DynaMixerOp)}
    generate |= {shape[::-1] for shape in generate}
    assert not generate & {tuple(layer.weight.shape) for name, layer in model.named_modules()
                           if isinstance(layer, torch.nn.Linear) and not name.endswith('generate')}
    matmuls = [(dtypes, shapes) for name, dtypes, shapes in kernels.calls if 'softmax' not in name]
    # Every matmul, ``generate``'s included (two mixings, rows and columns, per layer: on tensor cores on a GPU), and
    # the patch embedding's convolution in bfloat16; the mixing logits' softmax in float32 (below).
    assert {dtype for dtypes, shapes in matmuls if shapes & generate for dtype in dtypes} == {torch.bfloat16}
    assert len([shapes for _, shapes in matmuls if shapes & generate]) == 2 * len(TINY_ARCH['layers'])
    other = [dtypes for dtypes, shapes in matmuls if not shapes & generate]
    assert len(other) >= 10 and all(dtypes == {torch.bfloat16} for dtypes in other)
    seq_lens = {op.seq_len for op in model.modules() if isinstance(op, DynaMixerOp)}
    mixing_softmaxes = [dtypes for name, dtypes, shapes in kernels.calls if 'softmax' in name
                        for shape in shapes if shape[-1] == shape[-2] in seq_lens]
    assert len(mixing_softmaxes) == 2 * len(TINY_ARCH['layers'])
    assert all(dtypes == {torch.float32} for dtypes in mixing_softmaxes)

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step in range(3):
        losses = model.train_step(batch(step), wrapper)
        assert torch.isfinite(losses['loss']), step
    state = wrapper.optimizer.state
    assert all(p.dtype == state[p]['exp_avg'].dtype == state[p]['exp_avg_sq'].dtype == torch.float32
               for p in model.parameters())
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())


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
    with KernelDtypes() as kernels:
        losses = runner.model.train_step(batch(0), wrapper)
    assert torch.isfinite(losses['loss'])
    assert kernels.calls and all(dtypes == {torch.float32} for _, dtypes, _ in kernels.calls)
