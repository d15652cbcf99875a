"""timm's own model tests (``tests/test_models.py`` of huggingface/pytorch-image-models), as the calls they make,
on dynamixer_s/m/l at the input sizes those tests pick: forward, backward (and grad checkpointing), the default
cfgs of a non-standard model (``*mixer_*`` is in timm's NON_STD_FILTERS), features_only, forward_intermediates,
and fx forward and backward through timm's feature extractor. Expected values come from the modules run one by one,
not from the API under test. TorchScript is not supported (docs/inference.md)."""
import math

import pytest
import timm
import torch
from timm.models import create_feature_extractor, get_graph_node_names

import mmdynamixer  # noqa: F401  (registers the timm models)

MODELS = ['dynamixer_s', 'dynamixer_m', 'dynamixer_l']


def input_size(model, target):
    """timm's rule for a model without fixed_input_size: the default size, each side capped at ``target``."""
    channels, *sides = model.default_cfg['input_size']
    assert not model.default_cfg.get('fixed_input_size')
    return (channels, *(min(side, target) for side in sides))


@pytest.fixture(scope='module', params=MODELS)
def model_name(request):
    torch.manual_seed(0)
    return request.param


def test_forward(model_name):
    model = timm.create_model(model_name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *input_size(model, 384)))
    assert out.shape == (1, 1000) and not out.isnan().any()


def test_backward_and_grad_checkpointing(model_name):
    """timm's backward test, then the same step with gradient checkpointing: equal logits and gradients, and the
    layers recomputed in the backward (the first layer's mixing block runs twice, not once)."""
    model = timm.create_model(model_name, num_classes=42).train()
    x = torch.randn(2, *input_size(model, 128))
    first_block = model.network[0][0].attn
    results = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad(set_to_none=True)
        calls = []
        hook = first_block.register_forward_hook(lambda *_: calls.append(None))
        out = model(x)
        out.mean().backward()
        hook.remove()
        results.append((out.detach(), {name: p.grad for name, p in model.named_parameters()}, len(calls)))
    (plain, plain_grads, plain_calls), (checkpointed, checkpointed_grads, checkpointed_calls) = results
    assert not [name for name, grad in plain_grads.items() if grad is None]
    assert plain.shape[-1] == 42 and not plain.isnan().any()
    assert (plain_calls, checkpointed_calls) == (1, 2)
    torch.testing.assert_close(checkpointed, plain, rtol=1e-4, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_default_cfgs_non_std(model_name):
    model = timm.create_model(model_name).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg, state_dict = model.default_cfg, model.state_dict()
    x = torch.randn(1, *input_size(model, 320))
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        feature_axis = -1 if features.ndim == 3 else 1
        assert features.shape[feature_axis] == model.num_features
        assert pre_logits.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        assert pooled.shape[-1 if pooled.ndim == 3 else 1] == model.head_hidden_size
        assert pooled.shape == pre_logits.shape
        headless = timm.create_model(model_name, num_classes=0).eval()(x)
        assert headless.shape[-1 if headless.ndim == 3 else 1] == model.num_features
    assert f'{cfg["classifier"]}.weight' in state_dict
    assert f'{cfg["first_conv"]}.weight' in state_dict


def _check_maps(maps, channels, reductions, size):
    """One (1, C, H, W) map per stage: its channels, and ceil(size / reduction) positions a side (the model pads
    the image to whole patches)."""
    assert len(maps) == len(channels) >= 3
    for expected, reduction, feature_map in zip(channels, reductions, maps):
        assert tuple(feature_map.shape) == (1, expected, math.ceil(size[0] / reduction),
                                            math.ceil(size[1] / reduction))
        assert not feature_map.isnan().any()


def test_features_only(model_name):
    model = timm.create_model(model_name, features_only=True).eval()
    size = input_size(model, 96)
    with torch.no_grad():
        maps = model(torch.randn(1, *size))
    _check_maps(maps, model.feature_info.channels(), model.feature_info.reduction(), size[1:])


def _stage_by_stage(model, x):
    """The stage maps (NCHW) and the final normed map, computed module by module (patch embedding, each entry
    of ``network``, the final ``norm``), without forward_intermediates."""
    tokens = model.patch_embed(x)
    maps = []
    for position, module in enumerate(model.network):
        tokens = module(tokens)
        if position in model.stage_positions:
            maps.append(tokens.permute(0, 3, 1, 2))
    return model.norm(tokens).permute(0, 3, 1, 2), maps


def test_forward_intermediates(model_name):
    model = timm.create_model(model_name).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    size = input_size(model, 96)
    x = torch.randn(1, *size)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x, output_fmt='NCHW')
        _check_maps(intermediates, info.channels(), info.reduction(), size[1:])
        expected_final, expected_maps = _stage_by_stage(model, x)
        for ours, expected in zip(intermediates, expected_maps):
            torch.testing.assert_close(ours, expected, rtol=0, atol=0)
        torch.testing.assert_close(final, expected_final, rtol=0, atol=0)
        torch.testing.assert_close(model.forward_features(x), expected_final, rtol=0, atol=0)
        torch.testing.assert_close(model(x), model.head(expected_final.mean(dim=(2, 3))))
        model.set_grad_checkpointing()
        torch.testing.assert_close(model.forward_intermediates(x, output_fmt='NCHW')[0], final, rtol=1e-4, atol=1e-5)


def _fx_model(model):
    """The model traced by timm's feature extractor (its leaf modules and functions), returning its last node in
    the model's mode, as timm's fx tests do."""
    train_nodes, eval_nodes = get_graph_node_names(model)
    return create_feature_extractor(model, [(train_nodes if model.training else eval_nodes)[-1]])


def test_fx_forward_equals_eager(model_name):
    model = timm.create_model(model_name).eval()
    x = torch.randn(1, *input_size(model, 128))
    with torch.inference_mode():
        eager = model(x)
        (traced,) = _fx_model(model)(x).values()
    assert torch.equal(traced, eager) and not eager.isnan().any()


def test_fx_backward_reaches_every_parameter(model_name):
    model = timm.create_model(model_name, num_classes=42).train()
    traced = _fx_model(model)
    (out,) = traced(torch.randn(2, *input_size(model, 128))).values()
    out.mean().backward()
    assert not [name for name, p in traced.named_parameters() if p.grad is None]
    assert out.shape[-1] == 42 and not out.isnan().any()
