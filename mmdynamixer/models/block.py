"""The DynaMixer block (row, column and channel mixing with re-weighting) and its residual layer."""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..ops.onednn_linear import linear, linear_gelu
from .mixing import DynaMixerOp, static_sizes


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'

    @property
    def active(self) -> bool:
        """Whether the forward drops anything (else it is the identity)."""
        return self.drop_prob > 0.0 and self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        keep = 1.0 - self.drop_prob
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


class DynaMixerBlock(nn.Module):
    """Token mixing over a (B, H, W, D) map: DynaMixer along columns and rows, a channel
    projection, and a per-channel softmax re-weighting of the three branches; plus ``residual`` if given."""

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int):
        super().__init__()
        self.mix_h = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mix_w = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor = None) -> torch.Tensor:
        batch, height, width, dim = x.shape
        if static_sizes(height, width) and height == self.mix_h.seq_len and width == self.mix_w.seq_len:
            # The three projections of x in one matmul: channel branch, then both compressions.
            weight = torch.cat([self.mlp_c.weight, self.mix_h.compress.weight, self.mix_w.compress.weight])
            bias = torch.cat([self.mlp_c.weight.new_zeros(dim), self.mix_h.compress.bias, self.mix_w.compress.bias])
            c, code_h, code_w = linear(x, weight, bias).split(
                [dim, self.mix_h.compress.out_features, self.mix_w.compress.out_features], dim=-1)
            h = self.mix_h.mix_grid(x, code_h, dim=1)
            w = self.mix_w.mix_grid(x, code_w, dim=2)
        else:  # windows along a side that is not seq_len long, or of a size known only when a traced graph runs
            h = self.mix_h(x.transpose(1, 2)).transpose(1, 2)
            w = self.mix_w(x)
            c = linear(x, self.mlp_c.weight)
        # mean(h + w + c) without materialising the sum. Weight of channel k for branch t is feature 3k + t.
        mean = h.mean(dim=(1, 2)) + w.mean(dim=(1, 2)) + c.mean(dim=(1, 2))
        # (B, 3, D) and softmax over dim 1: a softmax over a last dim of 3 is ten times slower.
        a = self.reweight(mean).view(batch, dim, 3).transpose(1, 2).softmax(dim=1)[:, :, None, None, :]
        # Starting from w: the windowed h is a transposed view, and a sum laid out like it would need a copy
        # before the matmul (and, traced, a layout that depends on the size).
        mixed = (w * a[:, 1]).addcmul_(h, a[:, 0]).addcmul_(c, a[:, 2])
        return linear(mixed, self.proj.weight, self.proj.bias, residual)


class DynaMixerLayer(nn.Module):
    """Pre-norm residual layer: x + DropPath(block(norm1(x))), then x + DropPath(mlp(norm2(x)))."""

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int, mlp_ratio: float = 3.0,
                 drop_path: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DynaMixerBlock(dim, seq_len, num_segments, reduced_dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.drop_path.active:  # residuals added in the matmuls' epilogues
            x = self.attn(self.norm1(x), residual=x)
            return self.mlp(self.norm2(x), residual=x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
