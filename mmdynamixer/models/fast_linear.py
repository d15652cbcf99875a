"""``linear``: F.linear whose float32 CPU matmuls run in oneDNN, forward and backward.

PyTorch runs float32 CPU matmuls (``addmm``, ``mm``) in MKL. On CPUs that MKL does not give its
AVX-512 kernels (AMD Zen 4/5, this project's benchmark machine) that is about half the speed of
oneDNN's matmul, which PyTorch ships too but calls for float32 only from inductor's inference
fusions (``mkldnn::_linear_pointwise``). ``linear`` calls it in the forward and in a backward of its
own, in full float32 (no reduced-precision math: results differ from MKL's by summation order only).
Anything else (CUDA, other dtypes, autocast, PyTorch without oneDNN) takes F.linear.
"""
from typing import Optional

import torch
import torch.nn.functional as F

_ONEDNN_LINEAR = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)
_HAVE_ONEDNN = _ONEDNN_LINEAR is not None and torch.backends.mkldnn.is_available()


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: str = 'none'):
    if activation == 'gelu':
        return _ONEDNN_LINEAR(x, weight, bias, 'gelu', [], 'none')
    return _ONEDNN_LINEAR(x, weight, bias, 'none', [], '')


class _OneDnnLinear(torch.autograd.Function):
    """x @ weight.T + bias with oneDNN matmuls for the output and for both gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # grad_out @ weight: oneDNN multiplies by the transpose of its "weight" argument.
            grad_x = _onednn_linear(grad_2d, weight.t().contiguous(), None).view(x.shape)
        if ctx.needs_input_grad[1]:
            # grad_out.T @ x, from transposed views (oneDNN reads the strides; nothing is copied).
            grad_weight = _onednn_linear(grad_2d.t(), x.reshape(-1, x.shape[-1]).t(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_2d.sum(0)
        return grad_x, grad_weight, grad_bias


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight)`` takes the oneDNN path."""
    return (_HAVE_ONEDNN and x.device.type == 'cpu' and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu'))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.linear(x, weight, bias), in oneDNN for float32 on CPU."""
    if not onednn_applies(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDnnLinear.apply(x, weight, bias)
    return _onednn_linear(x, weight, bias)
