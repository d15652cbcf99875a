"""``linear``: F.linear (plus a residual) whose float32 CPU matmuls run in oneDNN, forward and backward.

PyTorch runs float32 CPU matmuls (``addmm``, ``mm``) in MKL. On CPUs that MKL does not give its
AVX-512 kernels (AMD Zen 4/5, this project's benchmark machine) that is about half the speed of
oneDNN's matmul, which PyTorch ships too but calls for float32 only from inductor's inference
fusions (``mkldnn::_linear_pointwise``). ``linear`` calls it for the output and both gradients, in
full float32 (no reduced-precision math: results differ from MKL's by summation order only), as the
custom op ``mmdynamixer::onednn_linear``, so that ``torch.compile`` keeps it as one opaque kernel. A
residual is added in the matmul's epilogue, and ``linear_gelu`` applies GELU there when no gradient
is needed.
Anything else (CUDA, other dtypes, autocast, few rows, oneDNN disabled or missing, torch < 2.4) takes
F.linear, and so do the tracers whose graphs leave this process: TorchScript tracing (FLOP counters such as
mmengine's FlopAnalyzer), torch.export and the ONNX exporter built on it, and torch.fx symbolic tracing.
Their graphs hold ``aten::linear``, never this op.
"""
from typing import Optional

import torch
import torch.nn.functional as F

# torch.library.custom_op (and its register_fake / register_autograd) arrived in torch 2.4: on older torch every
# call takes F.linear, which differs from the op by summation order only.
_HAVE_ONEDNN = (hasattr(torch.library, 'custom_op') and torch.backends.mkldnn.is_available()
                and hasattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise'))
if _HAVE_ONEDNN:
    from .onednn_ops import onednn_linear, onednn_linear_gelu
# torch.compiler.is_exporting is newer than torch 2.1, the oldest we support.
_is_exporting = getattr(getattr(torch, 'compiler', None), 'is_exporting', lambda: False)
# Below this many rows a call's fixed cost (tens of microseconds) outweighs oneDNN's faster kernel.
MIN_ROWS = 256


def traced_out_of_process(x: torch.Tensor) -> bool:
    """Whether ``x`` is being traced into a graph that leaves this process (torch.fx symbolic tracing, TorchScript
    tracing, torch.export): such graphs must hold plain aten ops, not this project's custom ops."""
    return isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or _is_exporting()


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight)`` takes the oneDNN path."""
    if traced_out_of_process(x):
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
