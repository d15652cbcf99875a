"""The fused Triton mixing (``mmdynamixer.ops.triton_mixing``) against the eager ``DynaMixerOp``, forward and
backward, at every (D, L, S, d) of the zoo, run on CPU by Triton's interpreter.

Triton reads TRITON_INTERPRET when it decorates the kernels, at import, so the comparisons run in one worker
process started with TRITON_INTERPRET=1 (this file run as a script, reading cases from stdin); the setting never
reaches this process or other test modules. ``torch.compile`` cannot run the op under the interpreter (dynamo's fake
tensors reach the interpreted kernel), so only the op's tracing is checked here (make_fx with fake tensors).
"""
import json
import os
import subprocess
import sys
import traceback
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from mmdynamixer.ops import triton_mixing

# Largest difference allowed, relative to the largest magnitude of the expected tensor. float32 measured at most
# 1.4e-6; bfloat16 runs at about its rounding (2**-8 relative, measured up to 1.1e-2).
TOLERANCE = {'float32': 1e-5, 'bfloat16': 3e-2}

# Each (D, L, S, d) of the zoo once: S's two stage shapes, M's, L's, the digits tiny arch's. The cases spread
# the paths over them: the grid (N == L) along either dim, padded windows (N not a multiple of L, N < L), float32
# and bfloat16, a transposed map; x is always a channel slice of a wider map and the codes a column slice of a
# wider linear's output, as in DynaMixerBlock.
CASES = {
    'tiny-stage1 grid rows': dict(shape=(32, 8, 4, 2), batch=2, size=(8, 8), dim=2, dtype='float32'),
    'tiny-stage2 grid columns': dict(shape=(64, 4, 8, 2), batch=2, size=(4, 4), dim=1, dtype='float32'),
    'tiny-stage1 windows columns bf16': dict(shape=(32, 8, 4, 2), batch=2, size=(11, 3), dim=1,
                                             dtype='bfloat16'),
    'S-stage1 grid columns': dict(shape=(192, 32, 8, 2), batch=1, size=(32, 2), dim=1, dtype='float32'),
    'S-stage2 grid rows bf16 transposed': dict(shape=(384, 16, 16, 2), batch=2, size=(2, 16), dim=2,
                                               dtype='bfloat16', transposed=True),
    'M-stage1 windows rows': dict(shape=(256, 32, 8, 2), batch=1, size=(2, 45), dim=2, dtype='float32'),
    'M-stage3 short columns': dict(shape=(512, 16, 16, 2), batch=1, size=(11, 2), dim=1, dtype='float32'),
    'L-stage1 grid rows bf16': dict(shape=(256, 32, 8, 8), batch=1, size=(2, 32), dim=2, dtype='bfloat16'),
    'L-stage2 windows rows transposed': dict(shape=(512, 16, 16, 8), batch=1, size=(2, 20), dim=2,
                                             dtype='float32', transposed=True),
}


def _perturbed_op(dim: int, seq_len: int, num_segments: int, reduced_dim: int, dtype: torch.dtype):
    """A DynaMixerOp whose parameters are moved off their initialisation, so that no bias is zero."""
    from mmdynamixer.models.mixing import DynaMixerOp
    torch.manual_seed(0)
    op = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
    with torch.no_grad():
        for parameter in op.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return op.to(dtype)


def _inputs(case: dict, op, dtype: torch.dtype):
    """x as a channel slice of a wider (B, H, W, D + 8) map (stored W-major if ``transposed``), a leaf."""
    batch, (height, width), channels = case['batch'], case['size'], op.dim
    torch.manual_seed(1)
    if case.get('transposed'):
        wide = torch.randn(batch, width, height, channels + 8, dtype=dtype).transpose(1, 2)
    else:
        wide = torch.randn(batch, height, width, channels + 8, dtype=dtype)
    return wide[..., 3:3 + channels].detach().requires_grad_()


def _codes(op, x: torch.Tensor) -> torch.Tensor:
    """compress(x) as a column slice of a wider linear's output (as the block's fused projections give it)."""
    extra = torch.ones(5, op.dim, dtype=x.dtype)
    wide = F.linear(x, torch.cat([op.compress.weight, extra]),
                    torch.cat([op.compress.bias, torch.zeros(5, dtype=x.dtype)]))
    return wide[..., :op.compress.out_features]


def _run(case: dict, op, fused: bool) -> dict:
    """The op's output and the gradients of a fixed random loss, through the fused or the eager op."""
    dtype = getattr(torch, case['dtype'])
    x = _inputs(case, op, dtype)
    op.zero_grad(set_to_none=True)
    code = _codes(op, x)
    code.retain_grad()
    axis, length = case['dim'], x.shape[case['dim']]
    if fused:
        mixed = triton_mixing.mix_tokens(x, code, op.generate.weight, op.generate.bias, dim=axis,
                                         seq_len=op.seq_len, num_segments=op.num_segments,
                                         reduced_dim=op.reduced_dim)
        assert mixed.is_contiguous() and mixed.dtype == x.dtype and mixed.shape == x.shape
        out = op.out(mixed)
    elif length == op.seq_len:
        out = op.mix_grid(x, code, axis)
    else:  # the eager op computes its own codes: its code gradient is checked through x and compress
        out = op(x) if axis == 2 else op(x.transpose(1, 2)).transpose(1, 2)
    torch.manual_seed(2)
    (out * torch.randn(out.shape, dtype=out.dtype)).sum().backward()
    result = dict(out=out, x=x.grad, compress_weight=op.compress.weight.grad, compress_bias=op.compress.bias.grad,
                  generate_weight=op.generate.weight.grad, generate_bias=op.generate.bias.grad)
    if length == op.seq_len:
        result['code'] = code.grad
    return {name: tensor.detach().clone() for name, tensor in result.items()}


def check_case(case: dict) -> None:
    """Raise AssertionError naming the first tensor where the fused op differs from the eager one."""
    op = _perturbed_op(*case['shape'], getattr(torch, case['dtype']))
    fused, eager = _run(case, op, fused=True), _run(case, op, fused=False)
    tolerance = TOLERANCE[case['dtype']]
    for name, expected in eager.items():
        difference = (fused[name].float() - expected.float()).abs().max().item()
        scale = expected.float().abs().max().item()
        assert scale > 0, f'{name}: the eager gradient is zero, the case checks nothing'
        assert difference <= tolerance * scale, (
            f'{name}: fused and eager differ by {difference:.3g}, more than {tolerance} x {scale:.3g}')


def _serve() -> None:
    """The worker: one JSON case per stdin line, one JSON reply per stdout line ('ok' or the traceback)."""
    for line in sys.stdin:
        try:
            check_case(json.loads(line))
            reply = 'ok'
        except Exception:  # the test process shows the traceback
            reply = traceback.format_exc()
        print(json.dumps(reply), flush=True)


@pytest.fixture(scope='module')
def interpreted(repo):
    """``check(case)``: the worker's reply for one case, the kernels run by Triton's interpreter."""
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get('PYTHONPATH')])))
    worker = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=repo, env=env)

    def check(case: dict) -> str:
        worker.stdin.write(json.dumps(case) + '\n')
        worker.stdin.flush()
        line = worker.stdout.readline()
        assert line, f'the interpreted worker exited with {worker.poll()} (its stderr is above)'
        return json.loads(line)

    yield check
    worker.stdin.close()
    worker.wait(timeout=60)


@pytest.mark.parametrize('name', list(CASES))
def test_fused_mixing_matches_eager_op(interpreted, name):
    assert interpreted(CASES[name]) == 'ok'


def test_every_zoo_shape_is_checked():
    from mmdynamixer.models.dynamixer import arch_zoo
    tiny = dict(embed_dims=[32, 64, 64, 64], resolutions=[8, 4, 4, 4], num_segments=[4, 8, 8, 8],
                reduced_dims=[2, 2, 2, 2])  # configs/dynamixer/dynamixer-tiny_2xb64_digits.py
    shapes = {shape for arch in [*arch_zoo.values(), tiny]
              for shape in zip(arch['embed_dims'], arch['resolutions'], arch['num_segments'], arch['reduced_dims'])}
    assert shapes == {case['shape'] for case in CASES.values()}


def _arguments(dim=2, channels=32, seq_len=8, num_segments=4, reduced_dim=2, weight_shape=None):
    x = torch.zeros(1, seq_len, seq_len, channels)
    return dict(x=x, code=torch.zeros(1, seq_len, seq_len, num_segments * reduced_dim),
                weight=torch.zeros(weight_shape or (seq_len * seq_len, seq_len * reduced_dim)),
                bias=torch.zeros(seq_len * seq_len), dim=dim, seq_len=seq_len, num_segments=num_segments,
                reduced_dim=reduced_dim)


@pytest.mark.parametrize('arguments, message', [
    (dict(dim=3), 'dim=3'),
    (dict(channels=30), 'num_segments=4 must divide the channels D=30'),
    (dict(weight_shape=(64, 15)), 'weight has shape (64, 15); expected (64, 16)'),
])
def test_bad_input_is_named(arguments, message):
    with pytest.raises(ValueError) as error:
        triton_mixing.mix_tokens(**_arguments(**arguments))
    assert message in str(error.value)


def test_unsupported_cases_give_reasons(monkeypatch):
    x = torch.zeros(1, 8, 8, 32)
    monkeypatch.setattr(triton_mixing, '_INTERPRETED', False)
    assert 'cpu' in triton_mixing.fused_mixing_unsupported(x, 8, 2)
    with FakeTensorMode():  # a CUDA tensor without a GPU
        x_cuda = torch.empty(1, 8, 8, 32, device='cuda')

    def gpu_with_shared_memory(kilobytes: int) -> None:
        properties = SimpleNamespace(name='GPU', shared_memory_per_block_optin=kilobytes * 1024)
        monkeypatch.setattr(torch.cuda, 'get_device_properties', lambda device: properties)

    gpu_with_shared_memory(99)  # an RTX 4090's
    assert 'GPU offers 99 KB of shared memory per block' in triton_mixing.fused_mixing_unsupported(x_cuda, 8, 2)
    gpu_with_shared_memory(227)  # an H100's
    assert triton_mixing.fused_mixing_unsupported(x_cuda, 8, 2) is None
    monkeypatch.setattr(triton_mixing, '_INTERPRETED', True)
    assert triton_mixing.fused_mixing_unsupported(x, 8, 2) is None
    assert 'torch.float64' in triton_mixing.fused_mixing_unsupported(x.double(), 8, 2)
    assert 'seq_len=33' in triton_mixing.fused_mixing_unsupported(x, 33, 2)


def test_op_traces_with_its_backward():
    """What torch.compile needs: the op and its backward op trace with fake tensors (no kernel runs)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    tensors = [torch.zeros(1, 8, 8, 32), torch.zeros(1, 8, 8, 8), torch.zeros(64, 16), torch.zeros(64)]

    def mixed_and_gradients(x, code, weight, bias):
        out = torch.ops.mmdynamixer.fused_mixing(x, code, weight, bias, 1, 8, 4, 2)
        return (out, *torch.autograd.grad(out.sum(), (x, code, weight, bias)))

    graph = make_fx(mixed_and_gradients, tracing_mode='fake')(*(t.requires_grad_() for t in tensors)).graph
    targets = {str(node.target) for node in graph.nodes}
    assert {'mmdynamixer.fused_mixing.default', 'mmdynamixer.fused_mixing_backward.default'} <= targets
    out_node = next(node for node in graph.nodes if str(node.target) == 'mmdynamixer.fused_mixing.default')
    assert tuple(out_node.meta['val'].shape) == (1, 8, 8, 32)


WITHOUT = r'''
import sys, torch
if sys.argv[1] == 'triton':
    sys.modules['triton'] = None  # as on CPU-only wheels
elif hasattr(torch.library, 'triton_op'):
    del torch.library.triton_op  # as on torch < 2.6
from mmdynamixer.ops import triton_mixing
x = torch.zeros(1, 8, 8, 32)
print(triton_mixing.fused_mixing_unsupported(x, 8, 2))
try:
    triton_mixing.mix_tokens(x, torch.zeros(1, 8, 8, 8), torch.zeros(64, 16), torch.zeros(64), dim=2, seq_len=8,
                             num_segments=4, reduced_dim=2)
except RuntimeError as error:
    print(error)
'''


@pytest.mark.stack
@pytest.mark.parametrize('missing, reason', [('triton', 'triton is not installed'),
                                             ('triton_op', 'has no torch.library.triton_op')])
def test_module_imports_without_triton_or_triton_op(repo, missing, reason):
    """Without triton (CPU-only wheels) or torch.library.triton_op (torch < 2.6: the floor stack) the module
    imports, says why the kernels cannot run, and mix_tokens raises that reason."""
    run = subprocess.run([sys.executable, '-c', WITHOUT, missing], capture_output=True, text=True, cwd=repo,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    unsupported, raised = run.stdout.splitlines()
    assert reason in unsupported
    assert raised == f'mix_tokens cannot run: {unsupported}'


@pytest.mark.parametrize('shape, dtype', [((192, 32, 8, 2), torch.bfloat16), ((512, 16, 16, 8), torch.float32)])
def test_kernels_compile_for_a_gpu(shape, dtype, tmp_path, monkeypatch):
    """The interpreter runs what a GPU build rejects (a loop-carried tile changing shape did): the three kernels
    compile for sm_90 with triton's own LLVM and ptxas, no GPU needed."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as compile_kernel
    monkeypatch.setenv('TRITON_CACHE_DIR', str(tmp_path))
    channels, seq_len, num_segments, reduced_dim = shape
    x = torch.zeros(1, seq_len, seq_len, channels, dtype=dtype)
    code = torch.zeros(1, seq_len, seq_len, num_segments * reduced_dim, dtype=dtype)
    weight, bias = torch.zeros(seq_len * seq_len, seq_len * reduced_dim), torch.zeros(seq_len * seq_len)
    *_, constexprs, _ = triton_mixing._launch_args(x, code, weight, bias, 2, seq_len, num_segments, reduced_dim)
    num_warps = constexprs.pop('num_warps')
    map_pointer = {torch.bfloat16: '*bf16', torch.float32: '*fp32'}[dtype]
    float32_pointers = {'weight_ptr', 'bias_ptr', 'grad_code_ptr', 'grad_weight_ptr', 'grad_bias_ptr'}

    def argument_type(name: str) -> str:
        if name in constexprs:
            return 'constexpr'
        if not name.endswith('_ptr'):
            return 'i32'
        return '*fp32' if name in float32_pointers else map_pointer

    for kernel in (triton_mixing._fused_mixing_kernel, triton_mixing._fused_mixing_backward_kernel,
                   triton_mixing._generate_grad_kernel):
        signature = {name: argument_type(name) for name in kernel.arg_names}
        compiled = compile_kernel(ASTSource(kernel, signature, constexprs), target=GPUTarget('cuda', 90, 32),
                                  options=dict(num_warps=num_warps))
        assert compiled.asm['cubin'], kernel.__name__


if __name__ == '__main__':
    _serve()
