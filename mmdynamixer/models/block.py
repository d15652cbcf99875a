"""The DynaMixer block (row, column and channel mixing with re-weighting) and its residual layer."""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .mixing import DynaMixerOp


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (submodules ``fc1``, ``fc2`` as in the release)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DynaMixerBlock(nn.Module):
    """Token mixing over a (B, H, W, D) map: DynaMixer along columns and rows, a channel
    projection, and a per-channel softmax re-weighting of the three branches."""

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int):
        super().__init__()
        self.mix_h = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mix_w = DynaMixerOp(dim, seq_len, num_segments, reduced_dim)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, _, dim = x.shape
        h = self.mix_h(x.transpose(1, 2)).transpose(1, 2)
        w = self.mix_w(x)
        c = self.mlp_c(x)
        # Weight of channel k for branch t is reweight's feature 3k + t.
        a = self.reweight((h + w + c).mean(dim=(1, 2))).view(batch, 1, 1, dim, 3).softmax(dim=-1)
        x = h * a[..., 0] + w * a[..., 1] + c * a[..., 2]
        return self.proj(x)


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
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
