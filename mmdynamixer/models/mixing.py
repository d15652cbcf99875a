"""The DynaMixer operation: token mixing with mixing matrices generated from the tokens."""
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.onednn_linear import linear, traced_out_of_process


def static_sizes(*sizes) -> bool:
    """Whether ``sizes`` are plain ints. They are symbolic while torch.fx, torch.export with dynamic dims or
    ``torch.compile(dynamic=True)`` trace: a choice made on them (padding, the fast path) must then be the
    general computation, so that the graph is exact at every size and not only at the traced one."""
    return all(isinstance(size, int) for size in sizes)


@torch.fx.wrap  # a call in torch.fx graphs: the autocast switch works when the graph runs
def _logits(code: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``generate``'s output in float32 at least (float64 stays float64), whatever autocast chose for ``code``:
    a float16 ``generate`` output overflows for large activations, and no cast afterwards can undo that. bfloat16
    codes (bfloat16 autocast) are multiplied in bfloat16, on tensor cores with float32 accumulation, and the output
    cast to float32: bfloat16 has float32's range, and the release's logits are bfloat16 there too."""
    if code.dtype == torch.bfloat16:
        return F.linear(code, weight.to(code.dtype), bias.to(code.dtype)).float()
    dtype = torch.promote_types(code.dtype, torch.float32)
    with torch.autocast(code.device.type, enabled=False):
        return linear(code.to(dtype), weight.to(dtype), bias.to(dtype))


def _triton_mixing():
    """:mod:`mmdynamixer.ops.triton_mixing`, imported on first use (it imports Triton)."""
    from ..ops import triton_mixing
    return triton_mixing


def fused_mixing_applies(x: torch.Tensor, op: 'DynaMixerOp') -> bool:
    """Whether the fused kernel mixes the (B, H, W, D) map ``x`` for ``op``: on a CUDA device (or anywhere under
    ``TRITON_INTERPRET=1``, which runs it on the CPU for tests) where the kernel module says it can run, and not
    while torch.fx, TorchScript or torch.export trace (their graphs leave the process: they keep the eager op)."""
    if traced_out_of_process(x):
        return False
    if not (x.is_cuda or os.environ.get('TRITON_INTERPRET') == '1'):
        return False
    return _triton_mixing().fused_mixing_unsupported(x, op.seq_len, op.reduced_dim) is None


def mix_tokens_fused(op: 'DynaMixerOp', x: torch.Tensor, code: torch.Tensor, dim: int) -> torch.Tensor:
    """``op`` (``out`` included) along ``dim`` (1: columns, 2: rows) of the (B, H, W, D) map ``x`` of any size, in the
    fused kernel; ``code`` is ``op.compress(x)``, possibly a strided view."""
    mixed = _triton_mixing().mix_tokens(x, code, op.generate.weight, op.generate.bias, dim=dim, seq_len=op.seq_len,
                                        num_segments=op.num_segments, reduced_dim=op.reduced_dim)
    return linear(mixed, op.out.weight, op.out.bias)


class DynaMixerOp(nn.Module):
    """Mix the tokens of each sequence along dim -2 of an (..., N, D) tensor.

    For a sequence of ``seq_len`` tokens this is the operation of the paper (and of the authors'
    release): the tokens are compressed to ``num_segments * reduced_dim`` features, ``generate``
    turns the flattened compressed sequence into one ``seq_len x seq_len`` matrix per segment,
    softmax over the source tokens makes each column a distribution, and each segment of
    ``dim / num_segments`` channels is mixed by its matrix.

    Any other length N runs over windows of ``seq_len`` tokens: the sequence is padded up to a
    multiple of ``seq_len``, padded tokens feed zeros to ``generate`` and get zero weight as
    sources, and the padded outputs are cropped away. N == seq_len gives the release's operation
    (one window); a concrete N == seq_len takes a shorter path to it.

    Args:
        dim (int): Channels D.
        seq_len (int): Tokens L the ``generate`` layer is made for.
        num_segments (int): Segments S ("heads"); must divide ``dim``.
        reduced_dim (int): Compressed features d per token and segment.
    """

    def __init__(self, dim: int, seq_len: int, num_segments: int, reduced_dim: int):
        super().__init__()
        if dim % num_segments != 0:
            raise ValueError(f'num_segments={num_segments} must divide the channels dim={dim}')
        self.dim = dim
        self.seq_len = seq_len
        self.num_segments = num_segments
        self.reduced_dim = reduced_dim
        self.compress = nn.Linear(dim, num_segments * reduced_dim)
        self.generate = nn.Linear(seq_len * reduced_dim, seq_len * seq_len)
        self.out = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f'seq_len={self.seq_len}, num_segments={self.num_segments}, reduced_dim={self.reduced_dim}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-2]
        if static_sizes(length) and length == self.seq_len:
            grid = x.reshape(-1, 1, length, self.dim)
            code = linear(grid, self.compress.weight, self.compress.bias)
            return self.mix_grid(grid, code, dim=2).view(x.shape)
        num_windows = (length + self.seq_len - 1) // self.seq_len
        padded = num_windows * self.seq_len
        windows = F.pad(x, (0, 0, 0, padded - length)).unflatten(-2, (num_windows, self.seq_len))
        valid = (torch.arange(padded, device=x.device) < length).view(num_windows, self.seq_len)
        mixed = self._mix_windows(windows, valid).flatten(-3, -2)
        if static_sizes(length):
            mixed = mixed[..., :length, :]
        else:  # cropped by a negative pad: a new tensor, where a slice would be a view whose layout (contiguous
            # or not) depends on the size, and torch.export would fix that layout to the traced size's
            mixed = F.pad(mixed, (0, 0, 0, length - padded))
        return linear(mixed, self.out.weight, self.out.bias)

    def mix_grid(self, x: torch.Tensor, code: torch.Tensor, dim: int) -> torch.Tensor:
        """The operation (``out`` included) along ``dim`` (1: columns, 2: rows) of a (B, H, W, D) map whose
        length there is ``seq_len``; ``code`` is ``compress(x)``, (B, H, W, S*d), possibly a strided view.

        Same function as :meth:`forward`, arranged for speed: the mixing matrices come out of ``generate``
        destination-major, so the softmax runs over contiguous memory and each matrix multiplies its
        segment's tokens directly; the map is permuted only to put each segment's sequence in a matrix.
        """
        if dim not in (1, 2) or x.dim() != 4 or x.shape[dim] != self.seq_len:
            raise ValueError(f'mix_grid mixes along dim 1 or 2 of a (B, H, W, D) map with {self.seq_len} tokens '
                             f'there, got dim={dim} and shape {tuple(x.shape)}')
        batch, height, width, _ = x.shape
        seq_len, segments = self.seq_len, self.num_segments
        # Sequence dim next to last, segments before it: (B, H|W, S, L, features).
        order = (0, 1, 3, 2, 4) if dim == 2 else (0, 2, 3, 1, 4)
        code = code.unflatten(-1, (segments, self.reduced_dim)).permute(order).flatten(-2)
        weight, bias = self._destination_major_generate()
        weights = _logits(code, weight, bias).unflatten(-1, (seq_len, seq_len)).softmax(-1)
        weights = weights.to(x.dtype)  # (..., L_dst, L_src)
        chunks = x.unflatten(-1, (segments, self.dim // segments)).permute(order)  # (..., S, L_src, D/S)
        inverse = (0, 1, 3, 2, 4) if dim == 2 else (0, 3, 1, 2, 4)
        mixed = torch.matmul(weights, chunks).permute(inverse).reshape(batch, height, width, self.dim)
        return linear(mixed, self.out.weight, self.out.bias)

    def _destination_major_generate(self):
        """``generate``'s weight and bias with output rows reordered from (source, destination) to
        (destination, source) pairs."""
        seq_len = self.seq_len
        weight = self.generate.weight.view(seq_len, seq_len, -1).transpose(0, 1).reshape(seq_len * seq_len, -1)
        bias = self.generate.bias.view(seq_len, seq_len).t().reshape(-1)
        return weight, bias

    def _mix_windows(self, x: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
        """Mix (..., L, D) windows; ``valid`` (broadcastable to (..., L)) marks real tokens."""
        seq_len, segments = self.seq_len, self.num_segments
        code = linear(x, self.compress.weight, self.compress.bias)
        code = code * valid.unsqueeze(-1).to(code.dtype)
        # (..., L, S*d) -> (..., S, L*d), token-major as the release flattens it.
        code = code.unflatten(-1, (segments, self.reduced_dim)).transpose(-3, -2).flatten(-2)
        logits = _logits(code, self.generate.weight, self.generate.bias)
        logits = logits.unflatten(-1, (seq_len, seq_len))  # (..., S, L_src, L_dst)
        logits = logits.masked_fill(~valid[..., None, :, None], float('-inf'))
        weights = logits.softmax(dim=-2).to(x.dtype)
        chunks = x.unflatten(-1, (segments, self.dim // segments))  # (..., L_src, S, D/S)
        mixed = torch.einsum('...sij,...isc->...jsc', weights, chunks)
        return mixed.flatten(-2)
