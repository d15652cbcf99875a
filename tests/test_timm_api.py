"""timm's model API on DynaMixer: features_only, forward_intermediates and pruning, the classifier's head and
pooling, layer-wise lr decay groups, gradient checkpointing, torch.fx."""
import pytest
import timm  # part of the tested stack: a missing timm fails these tests, it does not skip them
import torch

import mmdynamixer  # noqa: F401  (registers the timm models)
from mmdynamixer.integrations.timm import TimmDynaMixer
from mmdynamixer.models import DynaMixerLayer
from mmdynamixer.testing import TINY_ARCH, perturbed


def tiny(num_classes=10, **kwargs):
    return perturbed(TimmDynaMixer(TINY_ARCH, num_classes=num_classes, **kwargs))


def stage_outputs(model, x):
    """The stage maps as forward hooks on feature_info's modules see them (NHWC -> NCHW)."""
    seen = []
    handles = [model.get_submodule(info['module']).register_forward_hook(
        lambda module, args, out: seen.append(out.permute(0, 3, 1, 2))) for info in model.feature_info]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.stack
def test_features_only_gives_feature_info_modules_outputs():
    model = perturbed(timm.create_model('dynamixer_s', features_only=True, out_indices=(0, 2)))
    assert model.feature_info.channels() == [192, 384]
    assert model.feature_info.reduction() == [7, 14]
    assert model.feature_info.module_name() == ['network.0', 'network.3']
    x = torch.randn(2, 3, 57, 64)
    with torch.no_grad():
        features = model(x)
    assert [tuple(f.shape) for f in features] == [(2, 192, 9, 10), (2, 384, 5, 5)]
    full = timm.create_model('dynamixer_s', num_classes=0).eval()
    full.load_state_dict(model.model.state_dict(), strict=False)  # features_only pruned stage 3, norm and head
    expected = stage_outputs(full, x)
    for ours, theirs in zip(features, [expected[0], expected[2]]):
        torch.testing.assert_close(ours, theirs)


def test_forward_intermediates_norm_format_and_final():
    model = tiny()
    x = torch.randn(2, 3, 61, 45)
    raw = stage_outputs(model, x)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        normed = model.forward_intermediates(x, indices=2, norm=True, output_fmt='NHWC', intermediates_only=True)
        features = model.forward_features(x)
    assert len(maps) == 4
    for ours, theirs in zip(maps, raw):
        torch.testing.assert_close(ours, theirs)
    # NCHW as memory too, as timm's Swin and MLP-Mixer return it: ops on raw NCHW data misread channels-last strides.
    assert all(m.is_contiguous() for m in maps + [final, features])
    torch.testing.assert_close(final, features)
    torch.testing.assert_close(final, model.norm(raw[3].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    # norm: the classifier has an output norm on its last stage only; NHWC is the maps' own layout.
    torch.testing.assert_close(normed[0], raw[2].permute(0, 2, 3, 1))
    torch.testing.assert_close(normed[1], model.norm(raw[3].permute(0, 2, 3, 1)))


def test_forward_intermediates_stop_early_runs_fewer_stages():
    model = tiny()
    calls = []
    model.network[-1].register_forward_hook(lambda *_: calls.append('last'))
    with torch.no_grad():
        final, maps = model.forward_intermediates(torch.randn(1, 3, 56, 56), indices=[0, -3], stop_early=True)
    assert len(maps) == 2 and not calls
    assert final.shape == maps[1].shape  # the last stage run, stage 1 (no norm of its own)


@pytest.mark.parametrize('indices,message', [(5, 'last n stages'), ([4], 'out of range'), ([], 'empty')])
def test_forward_intermediates_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        tiny().forward_intermediates(torch.randn(1, 3, 14, 14), indices=indices)


def test_prune_intermediate_layers_keeps_the_kept_stages():
    model = tiny()
    x = torch.randn(2, 3, 50, 90)
    with torch.no_grad():
        before = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    assert model.prune_intermediate_layers(indices=[0, -3], prune_norm=True) == [0, 1]
    assert len(model.network) == 3 and model.stage_positions == [0, 2] and len(model.feature_info) == 2
    assert model.num_classes == 0 and model.num_features == 32
    assert not any(name.startswith(('norm', 'head')) for name in model.state_dict())
    with torch.no_grad():
        after = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        pooled = model(x)
    for ours, theirs in zip(after, before):
        torch.testing.assert_close(ours, theirs)
    assert pooled.shape == (2, 32, 4, 7)  # pruned head: the map itself


def test_forward_head_pre_logits_and_reset_classifier():
    model = tiny()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model(x)
    assert features.shape == (2, 32, 4, 4)
    torch.testing.assert_close(pre_logits, features.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, pre_logits @ model.head.weight.t() + model.head.bias)

    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5 and model(x).shape == (2, 5)
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pre_logits)
    model.reset_classifier(0, '')
    with torch.no_grad():
        torch.testing.assert_close(model(x), features)


def test_global_pool_argument_through_timm():
    model = timm.create_model('dynamixer_s', num_classes=0, global_pool='').eval()
    assert model.num_features == model.head_hidden_size == 384
    with torch.no_grad():
        assert model(torch.randn(1, 3, 98, 70)).shape == (1, 384, 7, 5)
    with pytest.raises(ValueError, match="global_pool='' keeps the"):
        timm.create_model('dynamixer_s', global_pool='')
    with pytest.raises(ValueError, match="global_pool='max' is not supported"):
        tiny().reset_classifier(10, 'max')


def test_pretrained_cfg_names_real_modules_and_pool_size():
    model = timm.create_model('dynamixer_m').eval()
    cfg = model.pretrained_cfg
    state = model.state_dict()
    assert cfg['first_conv'] + '.weight' in state and cfg['classifier'] + '.weight' in state
    assert cfg['paper_ids'] == 'arXiv:2201.12083' and cfg['crop_pct'] == 0.9
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, *cfg['input_size'])).shape[2:] == cfg['pool_size']


def test_group_matcher_gives_timm_layer_decay_in_depth_order():
    from timm.optim import param_groups_layer_decay

    model = tiny()
    groups = param_groups_layer_decay(model, layer_decay=0.5)
    scale_of = {id(p): group['lr_scale'] for group in groups for p in group['params']}
    # TINY_ARCH's network: stage 0, transition, stages 1-3 (one layer each); the final norm goes with the last
    # layer (timm's convention), the head alone at full rate.
    expected = {'patch_embed.': 0.5 ** 6, 'network.0.0.': 0.5 ** 5, 'network.1.proj.': 0.5 ** 4,
                'network.2.0.': 0.5 ** 3, 'network.3.0.': 0.5 ** 2, 'network.4.0.': 0.5, 'norm.': 0.5,
                'head.': 1.0}
    for name, param in model.named_parameters():
        prefix = next(p for p in expected if name.startswith(p))
        assert scale_of[id(param)] == pytest.approx(expected[prefix]), name
    coarse = model.group_matcher(coarse=True)
    assert coarse['stem'] == r'^patch_embed' and coarse['blocks'] == r'^network\.(\d+)'


def test_set_grad_checkpointing_same_gradients():
    """Same gradients, and the checkpointed layers recomputed in the backward: each layer's mixing block runs
    once per step without checkpointing, twice with it."""
    plain = tiny().train()
    checkpointed = TimmDynaMixer(TINY_ARCH, num_classes=10).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing()
    layers = [m for m in checkpointed.modules() if isinstance(m, DynaMixerLayer)]
    assert len(layers) == 4 and all(layer.with_cp for layer in layers)
    x = torch.randn(2, 3, 56, 56)
    calls = {}
    for name, model in (('plain', plain), ('checkpointed', checkpointed)):
        calls[name] = []
        for layer in model.modules():
            if isinstance(layer, DynaMixerLayer):
                layer.attn.register_forward_hook(lambda *_, seen=calls[name]: seen.append(None))
        model(x).square().sum().backward()
    assert (len(calls['plain']), len(calls['checkpointed'])) == (4, 8)
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    checkpointed.set_grad_checkpointing(False)
    assert not any(layer.with_cp for layer in layers)


@pytest.mark.parametrize('size', [(56, 56), (61, 45)], ids=['native', 'windowed'])
def test_torch_fx_trace_equals_eager(size):
    """Plain torch.fx traces through the network (the general windowed path, F.linear); timm's fx feature
    extraction keeps the block and the linears as calls and is bit-exact."""
    from timm.models import create_feature_extractor

    model = tiny()
    graph = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), rtol=1e-5, atol=1e-5)
        extractor = create_feature_extractor(model, return_nodes=['network.2', 'head'])
        out = extractor(x)
        assert torch.equal(out['head'], model(x))
        assert torch.equal(out['network.2'], stage_outputs(model, x)[1].permute(0, 2, 3, 1))
