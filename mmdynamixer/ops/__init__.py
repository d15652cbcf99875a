"""CPU kernels behind plain-PyTorch fallbacks: oneDNN float32 linears (``onednn_linear``)."""
from .onednn_linear import linear, linear_gelu

__all__ = ['linear', 'linear_gelu']
