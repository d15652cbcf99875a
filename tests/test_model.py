"""The plain-PyTorch model: exactness to the release, shapes, counts and input checks."""
import pytest
import torch

from mmdynamixer.models import DynaMixerNet, DynaMixerOp, arch_zoo
from release_reference import RefDynaMixer

# The spec's parameter counts (1000-class head), measured on the authors' release.
RELEASE_PARAMS_M = {'s': 26.27, 'm': 57.13, 'l': 97.82}

TINY_ARCH = dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 32], resolutions=[8, 4, 4, 4],
                 num_segments=[2, 4, 4, 4], reduced_dims=[2, 2, 2, 2],
                 transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3])


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value so zero biases and unit norms hide no bug."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_param_count_matches_release(arch):
    model = DynaMixerNet(arch)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == RELEASE_PARAMS_M[arch]


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


def test_drop_path_grows_linearly_over_all_layers():
    model = DynaMixerNet('s', drop_path_rate=0.1)
    rates = [m.drop_path.drop_prob for stage in model.network if isinstance(stage, torch.nn.Sequential)
             for m in stage]
    assert len(rates) == 18
    assert rates == pytest.approx([0.1 * k / 17 for k in range(18)])


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = perturbed(DynaMixerNet(TINY_ARCH, num_classes=10)).train()
    checkpointed = DynaMixerNet(TINY_ARCH, num_classes=10, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 56, 56)
    for model in (plain, checkpointed):
        model(x).square().sum().backward()
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
