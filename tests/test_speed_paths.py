"""The GPU speed paths, checked on the CPU: the fused mixing kernel selected inside the network (Triton's
interpreter), layers compiled per layer with bounded recompiles, the recipe's compile hook declared in the config,
and the bytes the eager bfloat16 path no longer moves."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch._dynamo
from torch.utils._python_dispatch import TorchDispatchMode

from mmdynamixer.models import DynaMixerNet
from mmdynamixer.models.block import DynaMixerBlock

# One stage of identical layers (drop path rates all different) and a second stage of other shapes.
TWO_STAGES = dict(layers=[6, 3], embed_dims=[16, 32], resolutions=[4, 2], num_segments=[4, 8], reduced_dims=[2, 2],
                  transitions=[True, False], mlp_ratios=[2, 2])

FUSED_IN_THE_NETWORK = r'''
import json, sys, torch
from mmdynamixer.models import DynaMixerNet, block
from mmdynamixer.testing import perturbed
from mmdynamixer.testing.models import logits_and_gradients

calls = []
fused = block.mix_tokens_fused
block.mix_tokens_fused = lambda *args, **kwargs: calls.append(kwargs['dim']) or fused(*args, **kwargs)
arch = dict(layers=[1, 1], embed_dims=[32, 64], resolutions=[8, 4], num_segments=[4, 8], reduced_dims=[2, 2],
            transitions=[True, False], mlp_ratios=[2, 2])
model = perturbed(DynaMixerNet(arch, num_classes=10))
result = {}
for shape in [(2, 3, 56, 56), (1, 3, 45, 70)]:  # the grid, and windows padded along both sides
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    outputs = []
    for fused_mixing in (True, False):
        model.set_fused_mixing(fused_mixing)
        start = len(calls)
        outputs.append(logits_and_gradients(model, x))
        result.setdefault(str(shape), []).append(len(calls) - start)
    result[str(shape)].append(max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
                                  for a, b in zip(*outputs)))
with torch.no_grad():
    exported = torch.export.export(model.eval(), (torch.randn(1, 3, 56, 56),))
result['export_calls'] = len(calls) - sum(counts[0] for key, counts in result.items() if key.startswith('('))
result['export_ops'] = sorted({str(node.target) for node in exported.graph.nodes if 'mmdynamixer' in str(node.target)})
print(json.dumps(result))
'''


def test_network_runs_the_fused_kernel_where_it_applies_and_matches_the_eager_op():
    """Under TRITON_INTERPRET=1 the network selects the fused kernel for both mixings of every layer, on the grid
    and on padded windows, and its logits and every gradient (input and parameters) match the eager op's;
    ``set_fused_mixing(False)`` turns it off, and torch.export keeps the eager op (its graph leaves the process)."""
    run = subprocess.run([sys.executable, '-c', FUSED_IN_THE_NETWORK], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, TRITON_INTERPRET='1'))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    for shape in ['(2, 3, 56, 56)', '(1, 3, 45, 70)']:
        fused_calls, eager_calls, worst = result[shape]
        assert (fused_calls, eager_calls) == (4, 0), shape  # 2 layers x (columns, rows); none when switched off
        assert worst < 1e-4, (shape, worst)
    assert result['export_calls'] == 0 and result['export_ops'] == []


def _graphs(model, batches, backend='aot_eager') -> int:
    """Graphs dynamo compiles for ``model``'s layers over training steps at the batch sizes ``batches``, then one
    evaluation at each."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model.compile_layers(backend=backend)
    for batch in batches:
        model(torch.randn(batch, 3, 28, 28)).sum().backward()
    model.eval()
    with torch.no_grad():
        for batch in batches:
            model(torch.randn(batch, 3, 28, 28))
    graphs = torch._dynamo.utils.counters['stats']['unique_graphs']
    torch._dynamo.reset()
    return graphs


def test_compiled_layers_share_graphs_whatever_their_drop_path_rates():
    """Nine layers of two shapes, each with its own drop path rate, trained at two batch sizes and evaluated: layers
    of one shape share their graphs (the rate is a buffer, not a constant of the graph). One graph per shape and mode,
    one more for the first layer (no drop path) and, once a second batch size appears, each again with a dynamic
    batch, and dynamo adds one more per mode on this model (11 in all, torch 2.14); one graph per rate would need
    more than 20."""
    model = DynaMixerNet(TWO_STAGES, num_classes=3, drop_path_rate=0.3).train()
    rates = [layer.drop_path.drop_prob for layer in model.modules() if hasattr(layer, 'drop_path')]
    assert len(set(rates)) == 9
    graphs = _graphs(model, batches=[4, 4, 3, 2])
    assert 0 < graphs <= 12, graphs


def test_compiled_layers_compute_what_eager_layers_do_and_copies_keep_their_own_weights():
    torch.manual_seed(0)
    model = DynaMixerNet(TWO_STAGES, num_classes=3).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        eager = model(x)
        model.compile_layers(backend='aot_eager')
        ema = copy.deepcopy(model)  # as mmengine's EMA copies the model
        for parameter in ema.parameters():
            parameter.add_(0.01)
        compiled, copied = model(x), ema(x)
    assert [key for key in model.state_dict() if '_orig_mod' in key] == []
    assert model.state_dict().keys() == DynaMixerNet(TWO_STAGES, num_classes=3).state_dict().keys()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert (copied - compiled).abs().max() > 1e-3  # the copy ran with its own (shifted) weights
    torch._dynamo.reset()


class _Ops(TorchDispatchMode):
    """Records (op name, output dtype, output shape) of every op that runs."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.ops.append((func.__name__, out.dtype, tuple(out.shape)))
        return out


@pytest.mark.parametrize('side', [8, 6])  # the grid path, and windows padded from 6 to 8 tokens
def test_bfloat16_block_casts_its_input_once_and_combines_in_bfloat16(side):
    """Under bfloat16 autocast, the block's float32 input (a LayerNorm output) is cast once, not once per matmul
    reading it, and no (B, H, W, D) map is computed in float32: branches, re-weighting and combine run in
    bfloat16. ``generate`` multiplies bfloat16 codes (its output only is float32, for the softmax)."""
    torch.manual_seed(0)
    block = DynaMixerBlock(dim=48, seq_len=8, num_segments=4, reduced_dim=2)  # maps of another size than matrices
    x = torch.randn(2, side, side, 48)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16), _Ops() as ops:
        out = block(x)
    assert out.dtype == torch.bfloat16
    map_shape = (2, side, side, 48)
    # Any cast of the map's values (autocast would cast the permuted token chunks too, in another shape).
    casts = [op for op in ops.ops if op[0].startswith('_to_copy') and op[1] == torch.bfloat16
             and torch.Size(op[2]).numel() == torch.Size(map_shape).numel()]
    assert len(casts) == 1, ops.ops
    assert [op for op in ops.ops if op[2] == map_shape and op[1] == torch.float32] == []
    generate_rows = 8 * 8  # seq_len x seq_len outputs of generate
    generate = [op for op in ops.ops
                if op[0].startswith(('addmm', 'mm', 'linear', 'bmm')) and op[2][-1] == generate_rows]
    assert generate and all(op[1] == torch.bfloat16 for op in generate), ops.ops


def test_compile_hook_compiles_on_the_devices_it_names_only(repo, tiny_imagenet, tmp_path):
    """The recipe configs declare ``default_hooks.compile``: on CPU the run stays eager (nothing compiled); with
    ``devices=['cpu']`` (inductor, as on a GPU) the run's layers are compiled, train, and save a checkpoint whose
    keys and values an eager model loads; ``default_hooks.compile=None`` removes the hook."""
    from mmengine.config import Config
    from mmengine.registry import RUNNERS

    def run(work, train=True, **options):
        cfg = Config.fromfile(str(repo / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'))
        opts = {'work_dir': str(work), 'experiment_name': f'compile_{work.name}', 'model.head.num_classes': 4,
                'data_preprocessor.num_classes': 4, 'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 2,
                'train_dataloader.batch_size': 8}
        for split in ('train', 'val', 'test'):
            opts.update({f'{split}_dataloader.dataset.data_root': str(tiny_imagenet),
                         f'{split}_dataloader.num_workers': 0, f'{split}_dataloader.persistent_workers': False})
        cfg.merge_from_dict({**opts, **options})
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        runner = RUNNERS.build(cfg)
        if train:
            runner.train()
        layers = [m for m in runner.model.modules() if type(m).__name__ == 'DynaMixerLayer']
        return runner, layers, torch._dynamo.utils.counters['stats']['unique_graphs']

    runner, layers, graphs = run(tmp_path / 'cpu_default')
    assert [type(hook).__name__ for hook in runner.hooks].count('CompileLayersHook') == 1
    assert graphs == 0 and all(layer.compile_options is None for layer in layers)

    runner, layers, graphs = run(tmp_path / 'cpu_asked', **{'default_hooks.compile.devices': ['cpu']})
    assert graphs > 0 and all(layer.compile_options is not None for layer in layers)
    checkpoint = torch.load(tmp_path / 'cpu_asked' / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert [key for key in checkpoint['state_dict'] if '_orig_mod' in key] == []
    eager_runner, _, _ = run(tmp_path / 'off', train=False, **{'default_hooks.compile': None})
    assert 'CompileLayersHook' not in [type(hook).__name__ for hook in eager_runner.hooks]
    eager_runner.model.load_state_dict(checkpoint['state_dict'])
    torch.testing.assert_close(eager_runner.model.state_dict(), runner.model.state_dict())
    torch._dynamo.reset()
