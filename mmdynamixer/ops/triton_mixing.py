"""The DynaMixer mixing fused into Triton kernels: ``mix_tokens`` and the custom ops ``mmdynamixer::fused_mixing``
and ``mmdynamixer::fused_mixing_backward`` (``torch.library.triton_op``, so ``torch.compile`` sees the kernels).

What one call computes is :meth:`DynaMixerOp.mix_grid` without ``out`` (N == seq_len) or, for any other length N
along the mixed dim, :meth:`DynaMixerOp.forward`'s windows of ``seq_len`` tokens without ``out``: per line (the
tokens along ``dim`` at fixed other indices), window and segment, ``generate`` turns the window's codes (zero for
padded tokens) into logits in float32, softmax over the source tokens (padded sources get zero weight) in float32,
and the segment's channels are mixed by that matrix; outputs past N are not written. The mixing weights are cast to
x's dtype before they multiply the tokens, as the eager op does: the bfloat16/float16 product then runs on tensor
cores, and the result rounds as the eager op's does.

Where it runs (:func:`fused_mixing_unsupported` says why not, for the caller's fallback to the eager op): CUDA
tensors of float32, bfloat16 or float16 with triton and torch >= 2.6 (``triton_op``); any device while
``TRITON_INTERPRET=1`` was set when this module was imported (Triton's interpreter, for tests on CPU; the kernels
are decorated at import, which is when Triton reads that variable); ``seq_len`` <= 32, the zoo's largest; a GPU
with at least 160 KB of shared memory per block (A100, H100, H200, B200; not consumer GPUs or V100). Every zoo arch
(S, M, L, the digits tiny) runs it, on the grid and on padded windows alike. Without triton or on an older torch
the module imports and only that function works. Under the interpreter the op runs eagerly but not under
``torch.compile`` (dynamo's fake tensors reach the interpreted kernel); on CUDA ``triton_op`` hands the kernels
to inductor.

Kernel design (GPU; sizes of the zoo: L = seq_len 16 or 32, d = reduced_dim 2 or 8, C = D/S 24 or 32; the digits
arch L 8 and 4, C 8). ``generate`` is one Linear shared by all segments, so a program takes ``BLOCK_ROWS`` (line,
window, segment) rows at once and the logits are a GEMM: (rows, L*d codes) @ (L*d, L*L) with float32 accumulation.
The L*L logits of a row are produced one block of ``BLOCK_DST`` destination tokens at a time (all L sources, so
the softmax over sources is complete in registers), multiplied by the row's tokens in a batched ``tl.dot``
(rows, dst, src) @ (rows, src, C), and written at their places in the (B, H, W, D) output. Tokens and codes are
read through their strides (no permuted copy), and nothing of size L*L leaves the chip. ``tl.dot`` needs every
dimension >= 16: L, C, the destination block and the code width L*d are padded to powers of two >= 16 with masks
(padded sources get -inf logits, padded channels and destinations are never stored). The block sizes are fixed
(:func:`_tiles`) rather than autotuned: 16 rows, 16 destinations, and a code chunk that keeps each ``generate``
weight tile at 8K elements (16 KB in bfloat16), 8 warps; chosen from ptxas's register and shared-memory report
of an sm_90 build, not from timings (none were possible yet).

Backward (FlashAttention's pattern): the mixing matrices are recomputed from the codes, never saved. One kernel
per row block gives d(x) (stored once per row block) and d(code) (summed over the destination blocks in a float32
buffer that only this program touches); a second gives ``generate``'s weight and bias gradient: each program owns
one (destination block, code chunk) tile of the weight and a fixed share of the rows, writes its partial sum, and
the partials are summed in one reduction. No atomics: results are run-to-run deterministic. The price is that
second kernel's recomputation: once per code chunk of its tile, that is L*d / ``BLOCK_CODE`` times the forward's
logits (1 for S and M at L = 16, 4 at L = 32 and for L at L = 16, 16 for L at L = 32), the first thing to
measure on a GPU against larger chunks (fewer recomputations, more spills) or a bfloat16 d(logits) buffer.

Dtypes: the ``generate`` product runs in the codes' dtype, its float32 weight rounded to it on load (bfloat16/
float16 on tensor cores, where the eager op multiplies in float32; float32 as TF32 only when
``torch.backends.cuda.matmul.allow_tf32`` is set, as torch's own float32 matmuls), the mixing product in x's, both
accumulating in float32. The op does not consult autocast: pass x in the dtype the mixing should run in. (Triton
3.8's interpreter multiplies bfloat16's raw bits in ``tl.dot``: interpreted, the rounded operands are multiplied
in float32 instead.)
"""
import math
import os
from typing import Optional, Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only wheels and the floor stack: only fused_mixing_unsupported is usable
    triton = None

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The kernels' tiles are made for the zoo's L (4 to 32); at 64 the backward needs 225 KB of shared memory.
MAX_SEQ_LEN = 32
# Shared memory per block the largest kernel needs (the float32 backward at L = 32: 160 KB in sm_80 and sm_90
# builds): A100, H100, H200 and B200 offer it; consumer GPUs (about 100 KB per block) and V100 do not.
SHARED_MEMORY_NEEDED = 160 * 1024
# Triton reads TRITON_INTERPRET when @triton.jit decorates, that is when this module is imported.
_INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'

_missing = []
if triton is None:
    _missing.append('triton is not installed')
if not hasattr(torch.library, 'triton_op'):
    _missing.append(f'torch {torch.__version__} has no torch.library.triton_op (torch >= 2.6 needed)')
# Why the kernels cannot exist in this environment, or None.
_UNAVAILABLE = '; '.join(_missing) or None


def fused_mixing_unsupported(x: Tensor, seq_len: int, reduced_dim: int) -> Optional[str]:
    """None when :func:`mix_tokens` can run for ``x`` (CUDA tensor with triton and torch >= 2.6 present, or any
    device while TRITON_INTERPRET=1 was set at import; float32/bfloat16/float16), else a short reason."""
    if _UNAVAILABLE is not None:
        return _UNAVAILABLE
    if x.device.type != 'cuda' and not _INTERPRETED:
        return f'x is on {x.device.type}: the kernels run on CUDA (or under TRITON_INTERPRET=1)'
    if x.device.type == 'cuda' and not _INTERPRETED:
        properties = torch.cuda.get_device_properties(x.device)
        available = getattr(properties, 'shared_memory_per_block_optin', 0)
        if available < SHARED_MEMORY_NEEDED:
            return (f'{properties.name} offers {available // 1024} KB of shared memory per block; the kernels need '
                    f'{SHARED_MEMORY_NEEDED // 1024} KB')
    if x.dtype not in SUPPORTED_DTYPES:
        return f'x has dtype {x.dtype}; supported: {", ".join(map(str, SUPPORTED_DTYPES))}'
    if x.dim() != 4:
        return f'x has shape {tuple(x.shape)}; a (B, H, W, D) map is needed'
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        return f'seq_len={seq_len}; the kernels are tiled for 1 to {MAX_SEQ_LEN} tokens'
    if reduced_dim < 1:
        return f'reduced_dim={reduced_dim}; at least 1 is needed'
    return None


def mix_tokens(x: Tensor, code: Tensor, weight: Tensor, bias: Tensor, *, dim: int, seq_len: int,
               num_segments: int, reduced_dim: int) -> Tensor:
    """The DynaMixer mixing (without the ``out`` linear) along dim 1 (columns, H) or 2 (rows, W) of a (B, H, W, D)
    map, fused: returns the mixed (B, H, W, D) map (contiguous, x's dtype).

    ``code`` is ``compress(x)``, (B, H, W, S*d), any strides; ``weight`` (L*L, L*d) and ``bias`` (L*L) are
    ``generate``'s as stored (output index src*L + dst, input index token*d + k). Gradients flow to all four.
    """
    _check_inputs(x, code, weight, bias, dim, seq_len, num_segments, reduced_dim)
    reason = fused_mixing_unsupported(x, seq_len, reduced_dim)
    if reason is not None:
        raise RuntimeError(f'mix_tokens cannot run: {reason}')
    return torch.ops.mmdynamixer.fused_mixing(x, code, weight, bias, dim, seq_len, num_segments, reduced_dim)


def _check_inputs(x, code, weight, bias, dim, seq_len, num_segments, reduced_dim) -> None:
    """Raise ValueError naming the offending value for inputs the kernels would misread."""
    if x.dim() != 4:
        raise ValueError(f'x has shape {tuple(x.shape)}; mix_tokens needs a (B, H, W, D) map')
    if dim not in (1, 2):
        raise ValueError(f'dim={dim}: mix_tokens mixes along dim 1 (columns) or 2 (rows) of a (B, H, W, D) map')
    channels = x.shape[-1]
    if num_segments < 1 or channels % num_segments != 0:
        raise ValueError(f'num_segments={num_segments} must divide the channels D={channels} of x')
    expected = {'code': (x.shape[:3] + (num_segments * reduced_dim,), code),
                'weight': ((seq_len * seq_len, seq_len * reduced_dim), weight),
                'bias': ((seq_len * seq_len,), bias)}
    for name, (shape, tensor) in expected.items():
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f'{name} has shape {tuple(tensor.shape)}; expected {tuple(shape)} for x of shape '
                             f'{tuple(x.shape)}, seq_len={seq_len}, num_segments={num_segments}, '
                             f'reduced_dim={reduced_dim}')
        if tensor.device != x.device:
            raise ValueError(f'{name} is on {tensor.device}, x on {x.device}: all must be on one device')
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f'{name} has dtype {tensor.dtype}; supported: '
                             f'{", ".join(map(str, SUPPORTED_DTYPES))}')


def _pow2(n: int, least: int = 16) -> int:
    """The smallest power of two >= n and >= ``least`` (tl.dot's smallest dimension is 16)."""
    return max(least, 1 << max(0, math.ceil(math.log2(n))))


def _tiles(seq_len: int, reduced_dim: int, channels_per_segment: int) -> dict:
    """The kernels' block sizes (constexprs) and warps for one shape; see the module docstring.

    Not timed (no GPU yet); chosen from what ptxas reports when the kernels are compiled for sm_90 without a GPU
    (``triton.compile`` with a ``GPUTarget``, bfloat16, S stage 1): a 16 x 32 ``generate`` weight chunk rather
    than 32 x 32 cuts the forward's shared memory from 161 to 97 KB and the backward's register spills; 8 warps
    rather than 4 cut the backward's spills at L = 16 from 1.5 KB to 0.4 KB per thread, and 32 rows per program
    rather than 16 triple them. Every program re-reads ``generate``'s weight (from L2): more rows per program
    would save that traffic, at the cost of those registers."""
    seq_pad = _pow2(seq_len)
    block_dst = min(seq_pad, 16)
    code_pad = _pow2(seq_len * reduced_dim)
    return dict(BLOCK_ROWS=16, SEQ_PAD=seq_pad, BLOCK_DST=block_dst, CH_PAD=_pow2(channels_per_segment),
                BLOCK_CODE=min(code_pad, max(16, 8192 // (seq_pad * block_dst))), num_warps=8)


def _line_strides(t: Tensor, dim: int) -> Tuple[int, int, int, int]:
    """(batch, across, token, channel) strides of a (B, H, W, C) tensor whose tokens run along ``dim``."""
    across = 3 - dim
    return t.stride(0), t.stride(across), t.stride(dim), t.stride(3)


def _dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision: float32 stays IEEE unless torch allows TF32 for its own float32 matmuls."""
    return 'tf32' if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else 'ieee'


if _UNAVAILABLE is None:
    _TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

    @triton.jit
    def _dot(a, b, acc, DTYPE: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """acc + a @ b with operands rounded to DTYPE. UPCAST: the products in float32 after that rounding, for
        the interpreter, whose tl.dot multiplies bfloat16's raw bits (triton 3.8)."""
        a = a.to(DTYPE)
        b = b.to(DTYPE)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        return tl.dot(a, b, acc, input_precision=PRECISION)

    @triton.jit
    def _rows(row_block, num_rows, num_segments, num_windows, across, seq_len, BLOCK_ROWS: tl.constexpr):
        """A block of rows (line, window, segment; segment fastest) as batch and across indices (int64),
        the window's first token and the segment, plus the mask of real rows."""
        rows = row_block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        segment = rows % num_segments
        line = rows // num_segments
        start = (line % num_windows) * seq_len
        line = line // num_windows
        return (line // across).to(tl.int64), (line % across).to(tl.int64), start, segment, rows < num_rows

    @triton.jit
    def _line_tile(ptr, batch, across, start, segment, row_ok, length, stride_b, stride_a, stride_t, stride_c,
                   width, first_token, TOKENS: tl.constexpr, CH_PAD: tl.constexpr, SEQ_LIMIT):
        """Pointers and mask of a (rows, TOKENS, CH_PAD) tile: the segment's ``width`` channels of tokens
        first_token.. of each row's window (tokens past the window's SEQ_LIMIT or the line's length masked)."""
        token = first_token + tl.arange(0, TOKENS)[None, :, None]
        position = start[:, None, None] + token
        channel = tl.arange(0, CH_PAD)[None, None, :]
        offsets = (batch[:, None, None] * stride_b + across[:, None, None] * stride_a + position * stride_t
                   + (segment[:, None, None] * width + channel) * stride_c)
        mask = row_ok[:, None, None] & (token < SEQ_LIMIT) & (position < length) & (channel < width)
        return ptr + offsets, mask

    @triton.jit
    def _code_tile(code_ptr, batch, across, start, segment, row_ok, length, stride_b, stride_a, stride_t,
                   stride_c, seq_len, reduced_dim, code_start, BLOCK_CODE: tl.constexpr):
        """Pointers and mask of a (rows, BLOCK_CODE) chunk of each row's window codes flattened token-major
        (feature token*d + k, as ``generate`` reads them); padded tokens masked (their codes are zero)."""
        feature = code_start + tl.arange(0, BLOCK_CODE)[None, :]
        position = start[:, None] + feature // reduced_dim
        offsets = (batch[:, None] * stride_b + across[:, None] * stride_a + position * stride_t
                   + (segment[:, None] * reduced_dim + feature % reduced_dim) * stride_c)
        mask = row_ok[:, None] & (feature < seq_len * reduced_dim) & (position < length)
        return code_ptr + offsets, mask

    @triton.jit
    def _generate_rows(dst_start, seq_len, SEQ_PAD: tl.constexpr, BLOCK_DST: tl.constexpr):
        """``generate``'s output rows src*L + dst for all sources and one destination block, source-major as
        the logits tile's columns (src, dst), with the mask of real (src, dst) pairs."""
        column = tl.arange(0, SEQ_PAD * BLOCK_DST)
        src = column // BLOCK_DST
        dst = dst_start + column % BLOCK_DST
        return src * seq_len + dst, (src < seq_len) & (dst < seq_len)

    @triton.jit
    def _mixing_weights(code_ptr, weight_ptr, bias_ptr, batch, across, start, segment, row_ok, length,
                        code_sb, code_sa, code_st, code_sc, weight_sr, weight_sc, bias_s, seq_len, reduced_dim,
                        dst_start, BLOCK_ROWS: tl.constexpr, SEQ_PAD: tl.constexpr, BLOCK_DST: tl.constexpr,
                        BLOCK_CODE: tl.constexpr, CODE_DTYPE: tl.constexpr, CODE_PRECISION: tl.constexpr,
                        UPCAST: tl.constexpr):
        """The rows' mixing weights for one destination block, (rows, src, dst) in float32: ``generate`` on
        the window's codes, bias added, softmax over the real sources."""
        out_row, pair_ok = _generate_rows(dst_start, seq_len, SEQ_PAD, BLOCK_DST)
        logits = tl.zeros((BLOCK_ROWS, SEQ_PAD * BLOCK_DST), tl.float32)
        for code_start in range(0, seq_len * reduced_dim, BLOCK_CODE):
            ptrs, mask = _code_tile(code_ptr, batch, across, start, segment, row_ok, length, code_sb, code_sa,
                                    code_st, code_sc, seq_len, reduced_dim, code_start, BLOCK_CODE)
            codes = tl.load(ptrs, mask=mask, other=0.0)
            feature = code_start + tl.arange(0, BLOCK_CODE)[:, None]
            weights = tl.load(weight_ptr + out_row[None, :] * weight_sr + feature * weight_sc,
                              mask=pair_ok[None, :] & (feature < seq_len * reduced_dim), other=0.0)
            logits = _dot(codes, weights, logits, CODE_DTYPE, CODE_PRECISION, UPCAST)
        logits += tl.load(bias_ptr + out_row * bias_s, mask=pair_ok, other=0.0).to(tl.float32)[None, :]
        logits = tl.reshape(logits, (BLOCK_ROWS, SEQ_PAD, BLOCK_DST))
        src = tl.arange(0, SEQ_PAD)[None, :, None]
        # Source 0 of every window is real, so no column is all -inf.
        logits = tl.where((src < seq_len) & (start[:, None, None] + src < length), logits, float('-inf'))
        logits = logits - tl.max(logits, axis=1)[:, None, :]
        expo = tl.exp(logits)
        return expo / tl.sum(expo, axis=1)[:, None, :]

    @triton.jit
    def _fused_mixing_kernel(
            x_ptr, code_ptr, weight_ptr, bias_ptr, out_ptr, num_rows, num_segments, num_windows, across, length,
            seq_len, reduced_dim, width, x_sb, x_sa, x_st, x_sc, code_sb, code_sa, code_st, code_sc, weight_sr,
            weight_sc, bias_s, out_sb, out_sa, out_st, out_sc, BLOCK_ROWS: tl.constexpr, SEQ_PAD: tl.constexpr,
            BLOCK_DST: tl.constexpr, CH_PAD: tl.constexpr, BLOCK_CODE: tl.constexpr, X_DTYPE: tl.constexpr,
            X_PRECISION: tl.constexpr, CODE_DTYPE: tl.constexpr, CODE_PRECISION: tl.constexpr,
            UPCAST: tl.constexpr):
        """Forward: each program mixes BLOCK_ROWS rows (line, window, segment), destination block by block."""
        batch, across_i, start, segment, row_ok = _rows(tl.program_id(0), num_rows, num_segments, num_windows,
                                                        across, seq_len, BLOCK_ROWS)
        token_ptrs, token_mask = _line_tile(x_ptr, batch, across_i, start, segment, row_ok, length, x_sb, x_sa,
                                            x_st, x_sc, width, 0, SEQ_PAD, CH_PAD, seq_len)
        tokens = tl.load(token_ptrs, mask=token_mask, other=0.0)  # (rows, src, channels)
        for dst_start in range(0, seq_len, BLOCK_DST):
            mixing = _mixing_weights(code_ptr, weight_ptr, bias_ptr, batch, across_i, start, segment, row_ok,
                                     length, code_sb, code_sa, code_st, code_sc, weight_sr, weight_sc, bias_s,
                                     seq_len, reduced_dim, dst_start, BLOCK_ROWS, SEQ_PAD, BLOCK_DST, BLOCK_CODE,
                                     CODE_DTYPE, CODE_PRECISION, UPCAST)
            # Weights rounded to x's dtype first, as the eager op casts them.
            mixed = _dot(tl.permute(mixing.to(X_DTYPE), (0, 2, 1)), tokens,
                         tl.zeros((BLOCK_ROWS, BLOCK_DST, CH_PAD), tl.float32), X_DTYPE, X_PRECISION, UPCAST)
            out_ptrs, out_mask = _line_tile(out_ptr, batch, across_i, start, segment, row_ok, length, out_sb,
                                            out_sa, out_st, out_sc, width, dst_start, BLOCK_DST, CH_PAD, seq_len)
            tl.store(out_ptrs, mixed.to(out_ptr.dtype.element_ty), mask=out_mask)

    @triton.jit
    def _softmax_grad(mixing, tokens, grad_ptrs, grad_mask, X_DTYPE: tl.constexpr, X_PRECISION: tl.constexpr,
                      UPCAST: tl.constexpr):
        """The output gradient of one destination block (rows, dst, channels) and the gradient of the logits
        (rows, src, dst) in float32: d(weights) = grad @ tokens^T, then the softmax backward over sources."""
        grad = tl.load(grad_ptrs, mask=grad_mask, other=0.0)
        grad_mixing = _dot(tokens, tl.permute(grad, (0, 2, 1)),
                           tl.zeros(mixing.shape, tl.float32), X_DTYPE, X_PRECISION, UPCAST)
        return grad, mixing * (grad_mixing - tl.sum(mixing * grad_mixing, axis=1)[:, None, :])

    @triton.jit
    def _fused_mixing_backward_kernel(
            x_ptr, code_ptr, weight_ptr, bias_ptr, grad_ptr, grad_x_ptr, grad_code_ptr, num_rows, num_segments,
            num_windows, across, length, seq_len, reduced_dim, width, x_sb, x_sa, x_st, x_sc, code_sb, code_sa,
            code_st, code_sc, weight_sr, weight_sc, bias_s, grad_sb, grad_sa, grad_st, grad_sc, gx_sb, gx_sa,
            gx_st, gx_sc, gc_sb, gc_sa, gc_st, gc_sc, BLOCK_ROWS: tl.constexpr, SEQ_PAD: tl.constexpr,
            BLOCK_DST: tl.constexpr, CH_PAD: tl.constexpr, BLOCK_CODE: tl.constexpr, X_DTYPE: tl.constexpr,
            X_PRECISION: tl.constexpr, CODE_DTYPE: tl.constexpr, CODE_PRECISION: tl.constexpr,
            UPCAST: tl.constexpr):
        """Backward for x and the codes over BLOCK_ROWS rows; the code gradient is summed over destination
        blocks in a float32 buffer (grad_code_ptr, zeros) whose elements only this program touches."""
        batch, across_i, start, segment, row_ok = _rows(tl.program_id(0), num_rows, num_segments, num_windows,
                                                        across, seq_len, BLOCK_ROWS)
        token_ptrs, token_mask = _line_tile(x_ptr, batch, across_i, start, segment, row_ok, length, x_sb, x_sa,
                                            x_st, x_sc, width, 0, SEQ_PAD, CH_PAD, seq_len)
        tokens = tl.load(token_ptrs, mask=token_mask, other=0.0)
        grad_tokens = tl.zeros((BLOCK_ROWS, SEQ_PAD, CH_PAD), tl.float32)
        for dst_start in range(0, seq_len, BLOCK_DST):
            mixing = _mixing_weights(code_ptr, weight_ptr, bias_ptr, batch, across_i, start, segment, row_ok,
                                     length, code_sb, code_sa, code_st, code_sc, weight_sr, weight_sc, bias_s,
                                     seq_len, reduced_dim, dst_start, BLOCK_ROWS, SEQ_PAD, BLOCK_DST, BLOCK_CODE,
                                     CODE_DTYPE, CODE_PRECISION, UPCAST)
            grad_ptrs, grad_mask = _line_tile(grad_ptr, batch, across_i, start, segment, row_ok, length, grad_sb,
                                              grad_sa, grad_st, grad_sc, width, dst_start, BLOCK_DST, CH_PAD,
                                              seq_len)
            grad, grad_logits = _softmax_grad(mixing, tokens, grad_ptrs, grad_mask, X_DTYPE, X_PRECISION, UPCAST)
            grad_tokens = _dot(mixing.to(X_DTYPE), grad, grad_tokens, X_DTYPE, X_PRECISION, UPCAST)
            grad_logits = tl.reshape(grad_logits, (BLOCK_ROWS, SEQ_PAD * BLOCK_DST))
            out_row, pair_ok = _generate_rows(dst_start, seq_len, SEQ_PAD, BLOCK_DST)
            for code_start in range(0, seq_len * reduced_dim, BLOCK_CODE):
                feature = code_start + tl.arange(0, BLOCK_CODE)[None, :]
                weights = tl.load(weight_ptr + out_row[:, None] * weight_sr + feature * weight_sc,
                                  mask=pair_ok[:, None] & (feature < seq_len * reduced_dim), other=0.0)
                code_ptrs, code_mask = _code_tile(grad_code_ptr, batch, across_i, start, segment, row_ok, length,
                                                  gc_sb, gc_sa, gc_st, gc_sc, seq_len, reduced_dim, code_start,
                                                  BLOCK_CODE)
                partial = tl.load(code_ptrs, mask=code_mask, other=0.0)
                tl.store(code_ptrs, _dot(grad_logits, weights, partial, CODE_DTYPE, CODE_PRECISION, UPCAST),
                         mask=code_mask)
        grad_x_ptrs, grad_x_mask = _line_tile(grad_x_ptr, batch, across_i, start, segment, row_ok, length, gx_sb,
                                              gx_sa, gx_st, gx_sc, width, 0, SEQ_PAD, CH_PAD, seq_len)
        tl.store(grad_x_ptrs, grad_tokens.to(grad_x_ptr.dtype.element_ty), mask=grad_x_mask)

    @triton.jit
    def _generate_grad_kernel(
            x_ptr, code_ptr, weight_ptr, bias_ptr, grad_ptr, grad_weight_ptr, grad_bias_ptr, num_rows,
            num_segments, num_windows, across, length, seq_len, reduced_dim, width, blocks_per_split, x_sb, x_sa,
            x_st, x_sc, code_sb, code_sa, code_st, code_sc, weight_sr, weight_sc, bias_s, grad_sb, grad_sa,
            grad_st, grad_sc, BLOCK_ROWS: tl.constexpr, SEQ_PAD: tl.constexpr, BLOCK_DST: tl.constexpr,
            CH_PAD: tl.constexpr, BLOCK_CODE: tl.constexpr, X_DTYPE: tl.constexpr, X_PRECISION: tl.constexpr,
            CODE_DTYPE: tl.constexpr, CODE_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """``generate``'s gradient: program (dst block, code chunk, split) sums d(logits)^T @ codes over its
        split's row blocks into its tile of grad_weight_ptr[split] (float32, (splits, L*L, L*d)); the programs
        of code chunk 0 also sum the bias gradient into grad_bias_ptr[split] ((splits, L*L))."""
        dst_start = tl.program_id(0) * BLOCK_DST
        code_start = tl.program_id(1) * BLOCK_CODE
        split = tl.program_id(2)
        grad_weight = tl.zeros((SEQ_PAD * BLOCK_DST, BLOCK_CODE), tl.float32)
        grad_bias = tl.zeros((SEQ_PAD * BLOCK_DST,), tl.float32)
        for row_block in range(split * blocks_per_split, (split + 1) * blocks_per_split):
            batch, across_i, start, segment, row_ok = _rows(row_block, num_rows, num_segments, num_windows,
                                                            across, seq_len, BLOCK_ROWS)
            mixing = _mixing_weights(code_ptr, weight_ptr, bias_ptr, batch, across_i, start, segment, row_ok,
                                     length, code_sb, code_sa, code_st, code_sc, weight_sr, weight_sc, bias_s,
                                     seq_len, reduced_dim, dst_start, BLOCK_ROWS, SEQ_PAD, BLOCK_DST, BLOCK_CODE,
                                     CODE_DTYPE, CODE_PRECISION, UPCAST)
            token_ptrs, token_mask = _line_tile(x_ptr, batch, across_i, start, segment, row_ok, length, x_sb,
                                                x_sa, x_st, x_sc, width, 0, SEQ_PAD, CH_PAD, seq_len)
            tokens = tl.load(token_ptrs, mask=token_mask, other=0.0)
            grad_ptrs, grad_mask = _line_tile(grad_ptr, batch, across_i, start, segment, row_ok, length, grad_sb,
                                              grad_sa, grad_st, grad_sc, width, dst_start, BLOCK_DST, CH_PAD,
                                              seq_len)
            _, grad_logits = _softmax_grad(mixing, tokens, grad_ptrs, grad_mask, X_DTYPE, X_PRECISION, UPCAST)
            grad_logits = tl.reshape(grad_logits, (BLOCK_ROWS, SEQ_PAD * BLOCK_DST))
            code_ptrs, code_mask = _code_tile(code_ptr, batch, across_i, start, segment, row_ok, length, code_sb,
                                              code_sa, code_st, code_sc, seq_len, reduced_dim, code_start,
                                              BLOCK_CODE)
            codes = tl.load(code_ptrs, mask=code_mask, other=0.0)
            grad_weight = _dot(tl.trans(grad_logits), codes, grad_weight, CODE_DTYPE, CODE_PRECISION, UPCAST)
            grad_bias += tl.sum(grad_logits, axis=0)
        out_row, pair_ok = _generate_rows(dst_start, seq_len, SEQ_PAD, BLOCK_DST)
        feature = code_start + tl.arange(0, BLOCK_CODE)[None, :]
        row_stride = seq_len * reduced_dim
        tl.store(grad_weight_ptr + split * seq_len * seq_len * row_stride + out_row[:, None] * row_stride + feature,
                 grad_weight, mask=pair_ok[:, None] & (feature < row_stride))
        if code_start == 0:
            tl.store(grad_bias_ptr + split * seq_len * seq_len + out_row, grad_bias, mask=pair_ok)

    def _launch_args(x: Tensor, code: Tensor, weight: Tensor, bias: Tensor, dim: int, seq_len: int,
                     num_segments: int, reduced_dim: int):
        """The scalar arguments shared by the kernels, their constexprs and the number of row blocks."""
        length, across = x.shape[dim], x.shape[3 - dim]
        num_windows = -(-length // seq_len)
        num_rows = x.shape[0] * across * num_windows * num_segments
        width = x.shape[3] // num_segments
        tiles = _tiles(seq_len, reduced_dim, width)
        sizes = (num_rows, num_segments, num_windows, across, length, seq_len, reduced_dim, width)
        strides = (*_line_strides(x, dim), *_line_strides(code, dim), weight.stride(0), weight.stride(1),
                   bias.stride(0))
        constexprs = dict(tiles, X_DTYPE=_TL_DTYPES[x.dtype], X_PRECISION=_dot_precision(x.dtype),
                          CODE_DTYPE=_TL_DTYPES[code.dtype], CODE_PRECISION=_dot_precision(code.dtype),
                          UPCAST=_INTERPRETED)
        return sizes, strides, constexprs, triton.cdiv(num_rows, tiles['BLOCK_ROWS'])

    def _weight_grad_splits(device: torch.device, row_blocks: int, tiles_per_split: int) -> Tuple[int, int]:
        """(splits, row blocks per split) of the weight gradient's rows: enough programs to fill the GPU (four
        per multiprocessor), a fixed function of the shapes and the GPU, so the sum is run-to-run deterministic.
        The interpreter takes two splits, which checks the reduction."""
        if device.type == 'cuda':
            programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
            splits = max(1, min(row_blocks, programs // tiles_per_split))
        else:
            splits = min(2, row_blocks)
        per_split = -(-row_blocks // splits)
        return -(-row_blocks // per_split), per_split

    @torch.library.triton_op('mmdynamixer::fused_mixing', mutates_args=())
    def fused_mixing(x: Tensor, code: Tensor, weight: Tensor, bias: Tensor, dim: int, seq_len: int,
                     num_segments: int, reduced_dim: int) -> Tensor:
        """The mixed (B, H, W, D) map; see :func:`mix_tokens`, which checks the arguments."""
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        sizes, strides, constexprs, row_blocks = _launch_args(x, code, weight, bias, dim, seq_len, num_segments,
                                                              reduced_dim)
        torch.library.wrap_triton(_fused_mixing_kernel)[(row_blocks,)](
            x, code, weight, bias, out, *sizes, *strides, *_line_strides(out, dim), **constexprs)
        return out

    @torch.library.triton_op('mmdynamixer::fused_mixing_backward', mutates_args=())
    def fused_mixing_backward(grad: Tensor, x: Tensor, code: Tensor, weight: Tensor, bias: Tensor, dim: int,
                              seq_len: int, num_segments: int,
                              reduced_dim: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Gradients of :func:`fused_mixing` for x, code, weight and bias, the mixing matrices recomputed."""
        sizes, strides, constexprs, row_blocks = _launch_args(x, code, weight, bias, dim, seq_len, num_segments,
                                                              reduced_dim)
        grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        grad_code = torch.zeros(code.shape, dtype=torch.float32, device=code.device)
        torch.library.wrap_triton(_fused_mixing_backward_kernel)[(row_blocks,)](
            x, code, weight, bias, grad, grad_x, grad_code, *sizes, *strides, *_line_strides(grad, dim),
            *_line_strides(grad_x, dim), *_line_strides(grad_code, dim), **constexprs)
        dst_blocks = triton.cdiv(seq_len, constexprs['BLOCK_DST'])
        code_blocks = triton.cdiv(seq_len * reduced_dim, constexprs['BLOCK_CODE'])
        splits, per_split = _weight_grad_splits(x.device, row_blocks, dst_blocks * code_blocks)
        grad_weight = torch.empty((splits,) + tuple(weight.shape), dtype=torch.float32, device=x.device)
        grad_bias = torch.empty((splits,) + tuple(bias.shape), dtype=torch.float32, device=x.device)
        torch.library.wrap_triton(_generate_grad_kernel)[(dst_blocks, code_blocks, splits)](
            x, code, weight, bias, grad, grad_weight, grad_bias, *sizes, per_split, *strides,
            *_line_strides(grad, dim), **constexprs)
        return (grad_x, grad_code.to(code.dtype), grad_weight.sum(0).to(weight.dtype),
                grad_bias.sum(0).to(bias.dtype))

    def _setup_context(ctx, inputs, output):
        x, code, weight, bias, dim, seq_len, num_segments, reduced_dim = inputs
        ctx.save_for_backward(x, code, weight, bias)
        ctx.shape_args = (dim, seq_len, num_segments, reduced_dim)

    def _backward(ctx, grad):
        grads = torch.ops.mmdynamixer.fused_mixing_backward(grad, *ctx.saved_tensors, *ctx.shape_args)
        return (*grads, None, None, None, None)

    fused_mixing.register_autograd(_backward, setup_context=_setup_context)
