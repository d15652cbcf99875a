"""The custom ops ``mmdynamixer::onednn_linear`` and ``mmdynamixer::onednn_linear_gelu``: float32 CPU linears in
oneDNN, forward and backward, opaque to ``torch.compile``. They need ``torch.library.custom_op`` (torch >= 2.4);
:mod:`.onednn_linear` decides when they run and imports them only on such a torch.
"""
from typing import Optional

import torch

_POINTWISE = torch.ops.mkldnn._linear_pointwise


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
