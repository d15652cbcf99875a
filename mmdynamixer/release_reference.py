"""A straightforward re-implementation of the authors' release forward (``models/vision_model.py`` and
``models/dynamixer.py`` of ziyuwwang/DynaMixer), written independently of mmdynamixer.models so the
tests compare two implementations and the benchmarks time one against the other. Same parameter names, so one
state dict loads into both. Torch only. Fixed-size only, as the release is: 7 x ``resolutions[0]`` pixels a side
(224 for S, M and L).
"""
import torch
from torch import nn


class RefOp(nn.Module):
    def __init__(self, dim, seq_len, heads, reduced):
        super().__init__()
        self.heads, self.reduced = heads, reduced
        self.compress = nn.Linear(dim, heads * reduced)
        self.generate = nn.Linear(seq_len * reduced, seq_len * seq_len)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        n, length, dim = x.shape
        r = self.compress(x).reshape(n, length, self.heads, self.reduced).permute(0, 2, 1, 3).reshape(n, self.heads, -1)
        p = torch.softmax(self.generate(r).reshape(n, self.heads, length, length), dim=-2)
        v = x.reshape(n, length, self.heads, dim // self.heads).permute(0, 2, 3, 1)  # n, S, D/S, L
        y = torch.matmul(v, p).permute(0, 3, 1, 2).reshape(n, length, dim)
        return self.out(y)


class RefMlp(nn.Module):
    def __init__(self, dim, hidden, out=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, seq_len, heads, reduced):
        super().__init__()
        self.mix_h = RefOp(dim, seq_len, heads, reduced)
        self.mix_w = RefOp(dim, seq_len, heads, reduced)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = RefMlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, height, width, dim = x.shape
        h = self.mix_h(x.permute(0, 2, 1, 3).reshape(-1, height, dim)).reshape(b, width, height, dim).permute(0, 2, 1, 3)
        w = self.mix_w(x.reshape(-1, width, dim)).reshape(b, height, width, dim)
        c = self.mlp_c(x)
        a = (h + w + c).permute(0, 3, 1, 2).flatten(2).mean(2)
        a = self.reweight(a).reshape(b, dim, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
        return self.proj(h * a[0] + w * a[1] + c * a[2])


def ref_drop_path(x, drop_prob, training):
    """timm's DropPath, as the release's layers apply it."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    return x * x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)


class RefLayer(nn.Module):
    def __init__(self, dim, seq_len, heads, reduced, mlp_ratio, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefBlock(dim, seq_len, heads, reduced)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x):
        x = x + ref_drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + ref_drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class RefConv(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, k)


class RefDynaMixer(nn.Module):
    """The release's VisionModel for an arch dict of mmdynamixer's keys; stochastic depth rising linearly to
    ``drop_path_rate`` over the layers while training."""

    def __init__(self, arch, num_classes=1000, drop_path_rate=0.0):
        super().__init__()
        dims = arch['embed_dims']
        self.patch_embed = RefConv(3, dims[0], 7)
        rates = torch.linspace(0, drop_path_rate, sum(arch['layers'])).tolist()
        network = []
        for i, depth in enumerate(arch['layers']):
            first = sum(arch['layers'][:i])
            network.append(nn.Sequential(*[
                RefLayer(dims[i], arch['resolutions'][i], arch['num_segments'][i], arch['reduced_dims'][i],
                         arch['mlp_ratios'][i], rates[first + j]) for j in range(depth)]))
            if i == len(arch['layers']) - 1:
                break
            if arch['transitions'][i] or dims[i] != dims[i + 1]:
                network.append(RefConv(dims[i], dims[i + 1], 2 if arch['transitions'][i] else 1))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
        for module in self.network:
            if isinstance(module, RefConv):
                x = module.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            else:
                x = module(x)
        x = self.norm(x.flatten(1, 2))
        return self.head(x.mean(1))
