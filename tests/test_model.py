"""The plain-PyTorch model: exactness to the release, shapes, counts and input checks."""
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from mmdynamixer.models import DynaMixerLayer, DynaMixerNet, DynaMixerOp, arch_zoo
from mmdynamixer.ops.onednn_linear import linear, linear_gelu, onednn_applies
from mmdynamixer.testing import TINY_ARCH, perturbed
from mmdynamixer.release_reference import RefDynaMixer, RefLayer, RefOp

# The spec's parameter counts (1000-class head), measured on the authors' release.
RELEASE_PARAMS_M = {'s': 26.27, 'm': 57.13, 'l': 97.82}

@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_param_count_matches_release(arch):
    model = DynaMixerNet(arch)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == RELEASE_PARAMS_M[arch]


@pytest.mark.stack
@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_logits_equal_release_forward(arch):
    model = perturbed(DynaMixerNet(arch))
    reference = RefDynaMixer(arch_zoo[arch]).eval()
    reference.load_state_dict(model.state_dict())  # strict: same layout as the release
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == (2, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-4


@pytest.mark.parametrize('arch,strides', [('s', [7, 14, 14, 14]), ('m', [7, 7, 14, 14]), ('l', [7, 14, 14, 14])])
def test_stage_maps_shapes(arch, strides):
    model = DynaMixerNet(arch, num_classes=0, out_indices=(0, 1, 2, 3), final_norm=False).eval()
    with torch.no_grad():
        outs = model.forward_features(torch.randn(1, 3, 224, 224))
    assert model.strides == strides
    assert [o.shape for o in outs] == [
        (1, dim, 224 // s, 224 // s) for dim, s in zip(arch_zoo[arch]['embed_dims'], strides)]


def test_out_indices_build_only_what_they_use():
    model = DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=(0, 1), final_norm=True)
    names = {n.split('.')[0] for n, _ in model.named_parameters()}
    assert names == {'patch_embed', 'network', 'norm0', 'norm1'}
    assert len(model.network) == 3  # stage 0, transition, stage 1
    x = torch.randn(2, 3, 56, 56)
    sum(o.sum() for o in model.forward_features(x)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_negative_out_index_is_last_stage_with_final_norm():
    model = DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=-1)
    assert model.out_indices == (3,)
    assert hasattr(model, 'norm') and not hasattr(model, 'norm3')


def test_dense_model_takes_the_classifiers_final_norm_as_its_last_output_norm():
    """A classifier's ``norm`` normalises the last stage's output, which a dense model normalises with ``norm3``:
    loading carries it over (plain torch loading, as timm and mmengine both load through _load_from_state_dict).
    A dense model without the last stage has no place for it; a checkpoint with its own norm3 keeps it."""
    classifier = perturbed(DynaMixerNet(TINY_ARCH, num_classes=10)).state_dict()
    dense = DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=(0, 3), final_norm=False)
    result = dense.load_state_dict(classifier, strict=False)
    assert result.missing_keys == ['norm0.weight', 'norm0.bias']
    assert result.unexpected_keys == ['head.weight', 'head.bias']
    assert torch.equal(dense.norm3.weight, classifier['norm.weight'])
    assert torch.equal(dense.norm3.bias, classifier['norm.bias'])

    shallow = DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=(0, 1), final_norm=False)
    assert set(shallow.load_state_dict(classifier, strict=False).unexpected_keys) >= {'norm.weight', 'norm.bias'}

    own_norm3 = dict(classifier, **{'norm3.weight': torch.full((32,), 2.0), 'norm3.bias': torch.full((32,), 3.0)})
    dense.load_state_dict(own_norm3, strict=False)
    assert torch.equal(dense.norm3.weight, torch.full((32,), 2.0))


def test_drop_path_grows_linearly_over_all_layers():
    model = DynaMixerNet('s', drop_path_rate=0.1)
    rates = [m.drop_path.drop_prob for stage in model.network if isinstance(stage, torch.nn.Sequential)
             for m in stage]
    assert len(rates) == 18
    assert rates == pytest.approx([0.1 * k / 17 for k in range(18)])


def test_gradient_checkpointing_recomputes_every_layer_in_backward():
    """with_cp: the layers keep no activations and run their forward again during backward (counted by forward
    pre-hooks on each layer's token mixer and MLP: torch stops a recomputation once it has what backward needs,
    before the MLP returns), and the gradients are the plain model's."""
    torch.manual_seed(0)
    plain = perturbed(DynaMixerNet(TINY_ARCH, num_classes=10)).train()
    checkpointed = DynaMixerNet(TINY_ARCH, num_classes=10, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 56, 56)
    for model, runs_in_backward in ((plain, 0), (checkpointed, 1)):
        calls = Counter()
        parts = {f'{name}.{part}': getattr(layer, part) for name, layer in model.named_modules()
                 if isinstance(layer, DynaMixerLayer) for part in ('attn', 'mlp')}
        assert len(parts) == 2 * sum(TINY_ARCH['layers'])
        for name, part in parts.items():
            part.register_forward_pre_hook(lambda *_, name=name: calls.update([name]))
        loss = model(x).square().sum()
        assert calls == Counter(dict.fromkeys(parts, 1))  # once each in forward
        loss.backward()
        assert calls == Counter(dict.fromkeys(parts, 1 + runs_in_backward))
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize('size', [(1, 1), (13, 13), (50, 90), (57, 64)])
def test_any_input_size_runs_finite(size):
    model = perturbed(DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=(0, 1, 2, 3), final_norm=False))
    with torch.no_grad():
        outs = model.forward_features(torch.randn(1, 3, *size))
    h7, w7 = -(-size[0] // 7), -(-size[1] // 7)
    assert outs[0].shape[2:] == (h7, w7)
    assert outs[3].shape[2:] == (-(-h7 // 2), -(-w7 // 2))
    assert all(torch.isfinite(o).all() for o in outs)


def assert_relatively_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str = '') -> None:
    """max |actual - expected| <= tol * max |expected|."""
    error = (actual - expected).abs().max().item() / expected.abs().max().item()
    assert error <= tol, f'{name}: relative error {error:.2e} > {tol:.0e}'


def assert_matches_in_training(ours, reference, x, run_reference=None):
    """Output within 1e-5 and gradients (input and every parameter) within 1e-4 of ``reference``, relative to
    their size; ``run_reference(reference, x)`` computes the reference's output (default: ``reference(x)``)."""
    run_reference = run_reference or (lambda module, inputs: module(inputs))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_ref = ours(x_ours), run_reference(reference, x_ref)
    assert_relatively_close(out_ours, out_ref, 1e-5, 'output')
    grad_out = torch.randn_like(out_ref)
    out_ours.backward(grad_out)
    out_ref.backward(grad_out)
    assert_relatively_close(x_ours.grad, x_ref.grad, 1e-4, 'input')
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        assert_relatively_close(p.grad, q.grad, 1e-4, name)


@pytest.mark.parametrize('dim,side,segments', [(192, 32, 8), (384, 16, 16)], ids=['stage1', 'stage4'])
def test_fast_layer_matches_release_forward_and_backward(dim, side, segments):
    """A whole layer (norms, the block's fast path, MLP) at DynaMixer-S stage shapes: outputs within 1e-5 and
    gradients (input and every parameter) within 1e-4 of the release's forward, relative to their size."""
    torch.manual_seed(0)
    ours = perturbed(DynaMixerLayer(dim, side, segments, reduced_dim=2)).train()
    reference = RefLayer(dim, side, segments, 2, 3).train()
    reference.load_state_dict(ours.state_dict())  # strict: same keys and shapes
    x = torch.randn(2, side, side, dim)
    with torch.no_grad():  # the inference path fuses GELU into fc1
        assert_relatively_close(ours(x), reference(x), 1e-5, 'inference output')
    assert_matches_in_training(ours, reference, x)


def test_windowed_op_over_whole_windows_matches_release_per_window():
    """N = 3 * seq_len: the windowed path is the release's operation applied to each window, with gradients."""
    torch.manual_seed(0)
    op = perturbed(DynaMixerOp(dim=32, seq_len=8, num_segments=4, reduced_dim=2))
    reference = RefOp(32, 8, 4, 2)
    reference.load_state_dict(op.state_dict())

    def per_window(module, x):
        return module(x.reshape(6, 8, 32)).reshape(2, 24, 32)

    assert_matches_in_training(op, reference, torch.randn(2, 24, 32), per_window)


@pytest.mark.parametrize('in_features,out_features', [(48, 16), (16, 48)], ids=['narrow-out', 'wide-out'])
def test_fast_linear_matches_f_linear(in_features, out_features):
    """Both weight-gradient orders (output narrower or wider than input), a strided input, no bias."""
    torch.manual_seed(0)
    x = torch.randn(20, 24, in_features).transpose(0, 1)  # not contiguous
    weight, bias = torch.randn(out_features, in_features), torch.randn(out_features)
    assert onednn_applies(x, weight)
    for b in (bias, None):
        leaves_ours = [t.clone().requires_grad_() for t in (x, weight) + ((b,) if b is not None else ())]
        leaves_ref = [t.detach().clone().requires_grad_() for t in leaves_ours]
        out_ours, out_ref = linear(*leaves_ours), F.linear(*leaves_ref)
        assert_relatively_close(out_ours, out_ref, 1e-6, 'output')
        grad_out = torch.randn_like(out_ref)
        out_ours.backward(grad_out)
        out_ref.backward(grad_out)
        for a, e, name in zip(leaves_ours, leaves_ref, ('x', 'weight', 'bias')):
            assert_relatively_close(a.grad, e.grad, 1e-6, name)


def test_fast_linear_residual_and_gelu():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 300, 12), torch.randn(10, 12), torch.randn(10)
    residual = torch.randn(2, 300, 10)
    leaves_ours = [t.clone().requires_grad_() for t in (x, weight, bias, residual)]
    leaves_ref = [t.clone().requires_grad_() for t in (x, weight, bias, residual)]
    out_ours = linear(*leaves_ours[:3], residual=leaves_ours[3])
    out_ref = leaves_ref[3] + F.linear(*leaves_ref[:3])
    assert_relatively_close(out_ours, out_ref, 1e-6, 'output')
    grad_out = torch.randn_like(out_ref)
    out_ours.backward(grad_out)
    out_ref.backward(grad_out)
    for a, e, name in zip(leaves_ours, leaves_ref, ('x', 'weight', 'bias', 'residual')):
        assert_relatively_close(a.grad, e.grad, 1e-6, name)
    with torch.no_grad():
        assert_relatively_close(linear_gelu(x, weight, bias), F.gelu(F.linear(x, weight, bias)), 1e-6, 'gelu')
    # With a gradient to compute, GELU stays a separate op that autograd differentiates.
    assert linear_gelu(leaves_ours[0], weight, bias).grad_fn.name() == 'GeluBackward0'


def test_onednn_linear_op_registration():
    """Fake tensor, autograd and dispatcher registrations of the custom ops agree with their eager kernels."""
    from mmdynamixer.ops.onednn_ops import onednn_linear, onednn_linear_gelu  # torch >= 2.4 only

    torch.manual_seed(0)
    x = torch.randn(300, 12, requires_grad=True)
    weight, bias = torch.randn(10, 12, requires_grad=True), torch.randn(10, requires_grad=True)
    torch.library.opcheck(onednn_linear, (x, weight, bias))
    torch.library.opcheck(onednn_linear, (x, weight, None))
    torch.library.opcheck(onednn_linear, (x, weight, bias, torch.randn(300, 10, requires_grad=True)))
    torch.library.opcheck(onednn_linear_gelu, (x.detach(), weight.detach(), bias.detach()))


def test_fast_linear_leaves_autocast_and_other_dtypes_to_f_linear(monkeypatch):
    x, weight = torch.randn(300, 12), torch.randn(10, 12)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not onednn_applies(x, weight)
        assert linear(x, weight).dtype == torch.bfloat16
    assert not onednn_applies(x.double(), weight.double())
    assert not onednn_applies(x[:2], weight)  # too few rows to pay off
    monkeypatch.setattr(torch.backends.mkldnn, 'enabled', False)
    assert not onednn_applies(x, weight)


def test_layer_compiles_as_one_graph():
    """torch.compile sees the layer as a single graph, for inference and training, with eager's results."""
    torch.manual_seed(0)
    layer = perturbed(DynaMixerLayer(16, 8, 2, reduced_dim=2)).train()
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    x = torch.randn(4, 8, 8, 16)
    assert onednn_applies(x, layer.mlp.fc1.weight)  # the custom op is in the graph
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x))
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    layer(x_eager).square().sum().backward()
    eager_grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    compiled(x_compiled).square().sum().backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)
    for (name, p), g in zip(layer.named_parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, msg=name)


def test_windowed_op_ignores_padding_and_matches_single_window():
    torch.manual_seed(0)
    op = perturbed(DynaMixerOp(dim=8, seq_len=4, num_segments=2, reduced_dim=2))
    x = torch.randn(3, 6, 8)
    with torch.no_grad():
        out = op(x)
        # The first window is a full window: exactly the fixed-length operation.
        torch.testing.assert_close(out[:, :4], op(x[:, :4]))
        # A token of the second (half-padded) window must not depend on the first window.
        changed = x.clone()
        changed[:, :4] += 1.0
        torch.testing.assert_close(op(changed)[:, 4:], out[:, 4:])
    assert out.shape == x.shape


def test_unknown_arch_names_allowed_values():
    with pytest.raises(ValueError, match=r"Unknown DynaMixer arch 'xl'.*\['l', 'm', 's'\]"):
        DynaMixerNet('xl')


def test_arch_dict_missing_key_and_ragged_lists():
    bad = dict(TINY_ARCH)
    del bad['resolutions']
    with pytest.raises(ValueError, match=r"missing keys \['resolutions'\]"):
        DynaMixerNet(bad)
    with pytest.raises(ValueError, match=r"one value per stage.*'layers': 3"):
        DynaMixerNet(dict(TINY_ARCH, layers=[1, 1, 1]))
    with pytest.raises(ValueError, match=r'stage 1 num_segments=5 does not divide embed_dims=32'):
        DynaMixerNet(dict(TINY_ARCH, num_segments=[2, 5, 4, 4]))


@pytest.mark.parametrize('bad', [4, -5, (0, 7)])
def test_out_indices_out_of_range(bad):
    with pytest.raises(ValueError, match=r'out_indices entry .* out of range.*allowed indices are -4\.\.3'):
        DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=bad)


def test_bad_input_tensors():
    model = DynaMixerNet(TINY_ARCH, num_classes=10)
    with pytest.raises(ValueError, match=r'4-D \(N, C, H, W\).*\(3, 56, 56\)'):
        model(torch.randn(3, 56, 56))
    with pytest.raises(ValueError, match=r'3-channel images.*with 1 channels'):
        model(torch.randn(2, 1, 56, 56))
