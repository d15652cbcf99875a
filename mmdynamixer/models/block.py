"""The DynaMixer block (row, column and channel mixing with re-weighting) and its residual layer."""
import functools
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..ops.onednn_linear import linear, linear_gelu
from .mixing import DynaMixerOp, fused_mixing_applies, mix_tokens_fused, static_sizes

# torch.compiler.is_compiling is newer than torch 2.1, the oldest we support.
_is_compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', lambda: False)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training.

    Compiled (:meth:`DynaMixerLayer.compile`), the keep probability is read from a buffer, not from the float
    ``drop_prob``, so that layers with different rates share one compiled graph instead of one each."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.register_buffer('keep_prob', torch.tensor(1.0), persistent=False)
        self.drop_prob = drop_prob

    @property
    def drop_prob(self) -> float:
        return self._drop_prob

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f'drop_prob={value!r}: expected a probability in [0, 1)')
        self._drop_prob = float(value)
        self.enabled = value > 0.0
        self.keep_prob.fill_(1.0 - value)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'

    @property
    def active(self) -> bool:
        """Whether the forward drops anything (else it is the identity)."""
        return self.enabled and self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        keep = self.keep_prob if _is_compiling() else 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (submodules ``fc1``, ``fc2`` as in the release), plus ``residual`` if given."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor, residual: torch.Tensor = None) -> torch.Tensor:
        hidden = linear_gelu(x, self.fc1.weight, self.fc1.bias)
        return linear(hidden, self.fc2.weight, self.fc2.bias, residual)


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """Autocast's compute dtype for ``device_type`` if autocast is on there, else None."""
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == 'cuda':
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return None


def _autocast_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in autocast's compute dtype when autocast is on for its device: cast once here, not once per consumer
    (autocast keeps LayerNorm's output in float32, and each matmul reading it would cast it again). A torch.fx
    proxy passes as it is: its graph casts where autocast does when it runs."""
    if isinstance(x, torch.fx.Proxy):
        return x
    dtype = _autocast_dtype(x.device.type) if x.dtype == torch.float32 else None
    return x if dtype is None else x.to(dtype)


class DynaMixerBlock(nn.Module):
    """Token mixing over a (B, H, W, D) map: DynaMixer along columns and rows, a channel
    projection, and a per-channel softmax re-weighting of the three branches; plus ``residual`` if given.

    ``fused_mixing`` (default True) runs both mixings in the fused kernel of :mod:`mmdynamixer.ops.triton_mixing`
    where it applies (:func:`~mmdynamixer.models.mixing.fused_mixing_applies`: a CUDA map, Triton and torch >= 2.6,
    not while exporting or tracing), else the eager op."""

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int, fused_mixing: bool = True):
        super().__init__()
        self.mix_h = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mix_w = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.fused_mixing = fused_mixing

    def _projections(self, x: torch.Tensor):
        """The three projections of x in one matmul: channel branch, then both compressions."""
        dim = x.shape[-1]
        weight = torch.cat([self.mlp_c.weight, self.mix_h.compress.weight, self.mix_w.compress.weight])
        bias = torch.cat([self.mlp_c.weight.new_zeros(dim), self.mix_h.compress.bias, self.mix_w.compress.bias])
        return linear(x, weight, bias).split(
            [dim, self.mix_h.compress.out_features, self.mix_w.compress.out_features], dim=-1)

    def forward(self, x: torch.Tensor, residual: torch.Tensor = None) -> torch.Tensor:
        x = _autocast_input(x)
        batch, height, width, dim = x.shape
        if self.fused_mixing and fused_mixing_applies(x, self.mix_h):
            c, code_h, code_w = self._projections(x)
            h = mix_tokens_fused(self.mix_h, x, code_h, dim=1)
            w = mix_tokens_fused(self.mix_w, x, code_w, dim=2)
        elif static_sizes(height, width) and height == self.mix_h.seq_len and width == self.mix_w.seq_len:
            c, code_h, code_w = self._projections(x)
            h = self.mix_h.mix_grid(x, code_h, dim=1)
            w = self.mix_w.mix_grid(x, code_w, dim=2)
        else:  # windows along a side that is not seq_len long, or of a size known only when a traced graph runs
            h = self.mix_h(x.transpose(1, 2)).transpose(1, 2)
            w = self.mix_w(x)
            c = linear(x, self.mlp_c.weight)
        # mean(h + w + c) without materialising the sum. Weight of channel k for branch t is feature 3k + t.
        mean = h.mean(dim=(1, 2)) + w.mean(dim=(1, 2)) + c.mean(dim=(1, 2))
        # (B, 3, D) and softmax over dim 1: a softmax over a last dim of 3 is ten times slower. In the branches'
        # dtype (autocast's softmax gives float32), so that the combine does not run in float32 under autocast.
        a = self.reweight(mean).view(batch, dim, 3).transpose(1, 2).softmax(dim=1).to(w.dtype)[:, :, None, None, :]
        # Starting from w: the windowed h is a transposed view, and a sum laid out like it would need a copy
        # before the matmul (and, traced, a layout that depends on the size).
        mixed = (w * a[:, 1]).addcmul_(h, a[:, 0]).addcmul_(c, a[:, 2])
        return linear(mixed, self.proj.weight, self.proj.bias, residual)


@functools.lru_cache(maxsize=None)
def _compiled_forward(options: tuple):
    """``DynaMixerLayer._forward`` compiled with ``options`` (sorted (name, value) pairs): one function for every
    layer, so that layers of the same shapes share its graphs."""
    return torch.compile(DynaMixerLayer._forward, **dict(options))


# Graphs one compiled layer function may hold before dynamo falls back to eager (its default is 8). Each distinct
# (channels, tokens, segments, reduced dims; training or eval; grad mode; drop path on or off; autocast dtype; input
# dtype) needs one, and a second batch size one more with a dynamic batch: 10 for S, M or L training with validation.
COMPILE_RECOMPILE_LIMIT = 64


class DynaMixerLayer(nn.Module):
    """Pre-norm residual layer: x + DropPath(block(norm1(x))), then x + DropPath(mlp(norm2(x)))."""

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int, mlp_ratio: float = 3.0,
                 drop_path: float = 0.0, with_cp: bool = False, fused_mixing: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DynaMixerBlock(dim, seq_len, num_segments, reduced_dim, fused_mixing=fused_mixing)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.with_cp = with_cp
        self.compile_options: Optional[tuple] = None

    def compile(self, **options) -> None:
        """Run the layer through ``torch.compile(**options)`` from now on (it compiles at the first forward). The
        compiled function is one for all layers and takes the layer as an argument, so that layers of the same shapes
        share its graphs, a deep copy (an EMA model) stays compiled with its own weights, and the state dict keeps its
        keys; its recompile limit is raised to :data:`COMPILE_RECOMPILE_LIMIT`."""
        self.compile_options = tuple(sorted(options.items()))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.drop_path.active:  # residuals added in the matmuls' epilogues
            x = self.attn(self.norm1(x), residual=x)
            return self.mlp(self.norm2(x), residual=x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _compiled_forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._dynamo  # noqa: F401  (torch.compile imported it)
        limit = 'recompile_limit' if hasattr(torch._dynamo.config, 'recompile_limit') else 'cache_size_limit'
        with torch._dynamo.config.patch(**{limit: max(getattr(torch._dynamo.config, limit),
                                                      COMPILE_RECOMPILE_LIMIT)}):
            # Contiguous: a stage's first layer reads the permuted view its patch embedding or transition returns,
            # and strides are part of a graph's guards (one more graph per stage otherwise).
            return _compiled_forward(self.compile_options)(self, x.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward = type(self)._forward if self.compile_options is None or _is_compiling() else \
            type(self)._compiled_forward
        if self.with_cp and x.requires_grad:
            return checkpoint(forward, self, x, use_reentrant=False)
        return forward(self, x)
