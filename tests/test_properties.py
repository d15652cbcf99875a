"""Property tests (hypothesis) over input sizes, batch sizes and small arch dicts: documented output shapes,
finite outputs, and the windowed path (any length) agreeing with the release's fixed-length path.

The windowed path is forced on the release's input by tiling it: an image made of a x b copies of a
7L x 7L image gives rows and columns of a*L and b*L tokens, which DynaMixerOp runs as a and b windows of
L tokens, each holding the original tokens, so every map (and the logits) must equal the original's."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdynamixer.models import DynaMixerNet
from mmdynamixer.models.mixing import DynaMixerOp

# Deterministic in CI (derandomize), no example database written into the checkout, no per-example deadline.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
PATCH = 7
# float64 models (their mixing logits stay float64): agreement to float64 summation-order differences.
CLOSE = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """The tensors here are tiny: OpenMP's threads cost more than they give, a lot more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def stage_widths(draw, num_stages: int):
    """Per stage: (embed_dim, num_segments) with segments dividing the width, and reduced dims, mlp ratios."""
    dims, segments = [], []
    for _ in range(num_stages):
        dim = draw(st.sampled_from([4, 8, 12, 16]))
        dims.append(dim)
        segments.append(draw(st.sampled_from([s for s in (1, 2, 4) if dim % s == 0])))
    return dict(embed_dims=dims, num_segments=segments,
                reduced_dims=draw(st.lists(st.integers(1, 2), min_size=num_stages, max_size=num_stages)),
                mlp_ratios=draw(st.lists(st.integers(1, 3), min_size=num_stages, max_size=num_stages)),
                layers=draw(st.lists(st.integers(1, 2), min_size=num_stages, max_size=num_stages)))


@st.composite
def any_archs(draw):
    """Arch dicts whose resolutions need not match any input: the windowed path runs wherever they differ."""
    num_stages = draw(st.integers(1, 3))
    return dict(draw(stage_widths(num_stages)),
                resolutions=draw(st.lists(st.integers(1, 6), min_size=num_stages, max_size=num_stages)),
                transitions=draw(st.lists(st.booleans(), min_size=num_stages, max_size=num_stages)))


@st.composite
def exact_archs(draw):
    """Arch dicts whose resolutions are the token counts of a 7L x 7L image at every stage (the release's case)."""
    num_stages = draw(st.integers(1, 3))
    resolution = draw(st.sampled_from([2, 4, 6, 8]))
    resolutions, transitions = [], []
    for _ in range(num_stages):
        resolutions.append(resolution)
        transitions.append(resolution % 2 == 0 and resolution > 2 and draw(st.booleans()))
        resolution //= 2 if transitions[-1] else 1
    return dict(draw(stage_widths(num_stages)), resolutions=resolutions, transitions=transitions)


def stage_strides(arch: dict) -> list:
    """7 pixels per token, doubled after each stride-2 transition (written out here, not taken from the model)."""
    return [PATCH * 2 ** sum(arch['transitions'][:i]) for i in range(len(arch['layers']))]


@PROPERTY
@given(arch=any_archs(), batch=st.integers(1, 3), height=st.integers(1, 60), width=st.integers(1, 60),
       num_classes=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_shapes_finite_and_per_sample(arch, batch, height, width, num_classes, seed):
    torch.manual_seed(seed)
    num_stages = len(arch['layers'])
    model = DynaMixerNet(arch, num_classes=num_classes, out_indices=tuple(range(num_stages))).eval()
    images = torch.randn(batch, 3, height, width)
    with torch.no_grad():
        maps = model.forward_features(images)
        logits = model(images)
        first_alone = model(images[:1])
    assert len(maps) == num_stages
    for stage, (out, stride) in enumerate(zip(maps, stage_strides(arch))):
        assert out.shape == (batch, arch['embed_dims'][stage], math.ceil(height / stride), math.ceil(width / stride))
        assert torch.isfinite(out).all()
    assert logits.shape == (batch, num_classes)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:1], first_alone, rtol=1e-4, atol=1e-5)  # no mixing across the batch


@PROPERTY
@given(arch=exact_archs(), batch=st.integers(1, 2), tiles=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       seed=st.integers(0, 2**16))
def test_windowed_path_equals_fixed_length_path(arch, batch, tiles, seed):
    torch.manual_seed(seed)
    num_stages = len(arch['layers'])
    model = DynaMixerNet(arch, num_classes=3, out_indices=tuple(range(num_stages))).double().eval()
    size = PATCH * arch['resolutions'][0]
    images = torch.randn(batch, 3, size, size, dtype=torch.float64)
    tiled = images.repeat(1, 1, *tiles)
    with torch.no_grad():
        maps, tiled_maps = model.forward_features(images), model.forward_features(tiled)
        torch.testing.assert_close(model(tiled), model(images), **CLOSE)
    for out, tiled_out in zip(maps, tiled_maps):
        torch.testing.assert_close(tiled_out, out.repeat(1, 1, *tiles), **CLOSE)


def test_windowed_path_equals_fixed_length_path_at_224():
    """The release's input size: 32 tokens per row and column, then 16 after the transition."""
    torch.manual_seed(0)
    arch = dict(layers=[1, 1], embed_dims=[8, 16], resolutions=[32, 16], num_segments=[2, 4], reduced_dims=[2, 2],
                transitions=[True, False], mlp_ratios=[2, 2])
    model = DynaMixerNet(arch, num_classes=5).double().eval()
    images = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        logits = model(images)
        for tiles in ((1, 2), (2, 1)):
            torch.testing.assert_close(model(images.repeat(1, 1, *tiles)), logits, **CLOSE)


@settings(PROPERTY, max_examples=100)
@given(length=st.integers(1, 40), seq_len=st.integers(1, 8), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_op_windows_are_exact_and_independent(length, seq_len, batch, seed):
    """Each full window of seq_len tokens gets exactly the fixed-length operation; a window's output depends on
    its own tokens only; and the mixing weights of every window, the padded last one too, are distributions over
    its real tokens: with ``out`` the identity, a channel constant over the tokens comes out unchanged."""
    torch.manual_seed(seed)
    op = DynaMixerOp(dim=8, seq_len=seq_len, num_segments=2, reduced_dim=2).double()
    x = torch.randn(batch, length, 8, dtype=torch.float64)
    with torch.no_grad():
        out = op(x)
        assert out.shape == x.shape and torch.isfinite(out).all()
        for start in range(0, length - seq_len + 1, seq_len):
            window = slice(start, start + seq_len)
            torch.testing.assert_close(out[:, window], op(x[:, window]), **CLOSE)
        last = (length - 1) // seq_len * seq_len
        changed = x.clone()
        changed[:, :last] += 1.0
        torch.testing.assert_close(op(changed)[:, last:], out[:, last:], **CLOSE)

        op.out.weight.copy_(torch.eye(8))
        op.out.bias.zero_()
        x[..., ::4] = 3.0  # channel 0 of both segments
        torch.testing.assert_close(op(x)[..., ::4], x[..., ::4], **CLOSE)
