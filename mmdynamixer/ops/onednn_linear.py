"""``linear``: F.linear (plus a residual) whose float32 CPU matmuls run in oneDNN, forward and backward.

PyTorch runs float32 CPU matmuls (``addmm``, ``mm``) in MKL. On CPUs that MKL does not give its
AVX-512 kernels (AMD Zen 4/5, this project's benchmark machine) that is about half the speed of
oneDNN's matmul, which PyTorch ships too but calls for float32 only from inductor's inference
fusions (``mkldnn::_linear_pointwise``). ``linear`` calls it for the output and both gradients, in
full float32 (no reduced-precision math: results differ from MKL's by summation order only), as the
custom op ``mmdynamixer::onednn_linear``, so that ``torch.compile`` keeps it as one opaque kernel. A
residual is added in the matmul's epilogue, and ``linear_gelu`` applies GELU there when no gradient
is needed.
Anything else (CUDA, other dtypes, autocast, few rows, oneDNN disabled or missing) takes F.linear, and so
do the tracers whose graphs leave this process: TorchScript tracing (FLOP counters such as mmengine's
FlopAnalyzer), torch.export and the ONNX exporter built on it, and torch.fx symbolic tracing. Their graphs
hold ``aten::linear``, never this op.
"""
from typing import Optional

import torch
import torch.nn.functional as F

_POINTWISE = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)
_HAVE_ONEDNN = _POINTWISE is not None and torch.backends.mkldnn.is_available()
# torch.compiler.is_exporting is newer than the torch >= 2.4 the model supports.
_is_exporting = getattr(torch.compiler, 'is_exporting', lambda: False)
# Below this many rows a call's fixed cost (tens of microseconds) outweighs oneDNN's faster kernel.
MIN_ROWS = 256


@torch.library.custom_op('mmdynamixer::onednn_linear', mutates_args=())
def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """residual + x @ weight.T + bias in oneDNN (float32, CPU). ``weight`` may be any strided view; ``x`` is
    copied to contiguous memory if it is not contiguous."""
    if residual is not None:
        return _POINTWISE.binary(x, residual.contiguous(), weight, bias, 'add')
    return _POINTWISE(x, weight, bias, 'none', [], '')


@onednn_linear.register_fake
def _(x, weight, bias, residual=None):
    return x.new_empty(x.shape[:-1] + (weight.shape[0],))


def _setup_context(ctx, inputs, output):
    x, weight, bias, residual = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.has_residual = residual is not None


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
    grad_x = grad_weight = grad_bias = grad_residual = None
    if ctx.needs_input_grad[0]:
        # grad_out @ weight, as oneDNN multiplies by the transpose of its weight argument.
        grad_x = onednn_linear(grad_2d, weight.t().contiguous(), None).view(x.shape)
    if ctx.needs_input_grad[1]:
        # grad_out.T @ x. The first operand is copied to contiguous memory and the second read through its
        # strides, so the narrower of the two (fewer features per row) goes first.
        x_2d = x.reshape(-1, x.shape[-1])
        if grad_2d.shape[1] <= x_2d.shape[1]:
            grad_weight = onednn_linear(grad_2d.t(), x_2d.t(), None)
        else:
            grad_weight = onednn_linear(x_2d.t(), grad_2d.t(), None).t()
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_2d.sum(0)
    if ctx.has_residual and ctx.needs_input_grad[3]:
        grad_residual = grad_out
    return grad_x, grad_weight, grad_bias, grad_residual


onednn_linear.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op('mmdynamixer::onednn_linear_gelu', mutates_args=())
def onednn_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """gelu(x @ weight.T + bias) (exact GELU, erf form) in oneDNN (float32, CPU); no gradient."""
    return _POINTWISE(x, weight, bias, 'gelu', [], 'none')


@onednn_linear_gelu.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[:-1] + (weight.shape[0],))


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight)`` takes the oneDNN path."""
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or _is_exporting():
        return False
    return (_HAVE_ONEDNN and torch.backends.mkldnn.enabled and x.device.type == 'cpu'
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and x.numel() >= MIN_ROWS * x.shape[-1])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """residual + F.linear(x, weight, bias), in oneDNN for float32 on CPU."""
    if onednn_applies(x, weight) and (residual is None or residual.dtype == torch.float32):
        return onednn_linear(x, weight, bias, residual)
    out = F.linear(x, weight, bias)
    return out if residual is None else residual + out


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.gelu(F.linear(x, weight, bias)), fused in oneDNN for float32 on CPU when no gradient is needed."""
    if onednn_applies(x, weight) and not (torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))):
        return onednn_linear_gelu(x, weight, bias)
    return F.gelu(linear(x, weight, bias))
