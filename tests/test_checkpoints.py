"""Checkpoints: release <-> mmpretrain conversion (CLI and functions), files that are not checkpoints, the
backbone's checked ``Pretrained`` init, and loading release and mmpretrain checkpoints into timm."""
import argparse
import pickle
import re
import runpy
import sys

import pytest
import torch
from mmengine.config import Config

from mmdynamixer.checkpoints import mmpretrain_to_release, release_to_mmpretrain
from mmdynamixer.integrations.timm import checkpoint_filter_fn
from mmdynamixer.models import DynaMixerNet, arch_zoo
from mmdynamixer.testing import TINY_ARCH, perturbed
from mmdynamixer.testing import build_mmpretrain_model as build_model
from mmdynamixer.release_reference import RefDynaMixer

CONVERTER = 'tools/model_converters/dynamixer_to_mmpretrain.py'


def release_checkpoint(path, arch=TINY_ARCH, num_classes=10):
    """A checkpoint as the release's timm train.py writes it: DDP ``module.`` keys, weights and EMA differ."""
    model, ema = perturbed(RefDynaMixer(arch, num_classes), 0), perturbed(RefDynaMixer(arch, num_classes), 1)
    optimizer = torch.optim.AdamW(model.parameters())
    torch.save(dict(epoch=3, arch='dynamixer_s', args=argparse.Namespace(model='dynamixer_s', lr=2e-3),
                    optimizer=optimizer.state_dict(),
                    state_dict={f'module.{k}': v for k, v in model.state_dict().items()},
                    state_dict_ema=ema.state_dict()), path)
    return model, ema


def classifier_config(repo, arch=TINY_ARCH, num_classes=10):
    cfg = Config.fromfile(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py')
    cfg.model.backbone.arch = arch
    cfg.model.head.update(num_classes=num_classes, in_channels=arch['embed_dims'][-1])
    return cfg.model


def build_classifier(repo, checkpoint, num_classes=10):
    model_cfg = classifier_config(repo, num_classes=num_classes)
    model_cfg.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    model = build_model(model_cfg)
    model.init_weights()
    return model.eval()


def run_converter(monkeypatch, capsys, repo, *args):
    """The converter's command line in this process; returns its exit status and stderr."""
    monkeypatch.setattr(sys, 'argv', [CONVERTER, *map(str, args)])
    try:
        runpy.run_path(str(repo / CONVERTER), run_name='__main__')
        status = 0
    except SystemExit as stopped:
        status = stopped.code
    return status, capsys.readouterr().err


# ---------------------------------------------------------------- the converter


@pytest.mark.parametrize('ema', [False, True])
def test_converter_round_trip(tmp_path, repo, monkeypatch, capsys, ema):
    """The converted file, loaded once, through the classifier's ``Pretrained`` init_cfg (the README's way), gives
    the release's logits (its EMA's with --ema): every tensor came from the file."""
    src, dst = tmp_path / 'release.pth', tmp_path / 'mmpretrain.pth'
    weights, ema_weights = release_checkpoint(src)
    assert run_converter(monkeypatch, capsys, repo, src, dst, *(['--ema'] if ema else [])) == (0, '')

    model = build_classifier(repo, dst)
    expected = (ema_weights if ema else weights)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), expected(x), atol=1e-5, rtol=1e-5)


def test_converter_rejects_other_models(tmp_path, repo, monkeypatch, capsys):
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'patch_embed.proj.weight': torch.zeros(1), 'layer1.0.conv1.weight': torch.zeros(1)}},
               src)
    status, err = run_converter(monkeypatch, capsys, repo, src, tmp_path / 'out.pth')
    assert status == 2
    assert f"cannot convert {src}: Cannot map 'layer1.0.conv1.weight'" in err
    assert not (tmp_path / 'out.pth').exists()
    with pytest.raises(ValueError, match='Not a DynaMixer release checkpoint: no patch_embed.proj.weight'):
        release_to_mmpretrain({'conv1.weight': torch.zeros(1)})


def _write_not_a_checkpoint(path, kind):
    """Files a user may hand the converter by mistake."""
    if kind == 'garbage bytes':
        path.write_bytes(b'garbage, not a checkpoint\n' * 10)
    elif kind == 'empty file':
        path.write_bytes(b'')
    elif kind == 'truncated download':
        release_checkpoint(path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif kind == 'truncated legacy file':
        torch.save({'state_dict': {'w': torch.zeros(1000)}}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif kind == 'plain pickle':
        path.write_bytes(pickle.dumps({'state_dict': {'patch_embed.proj.weight': [0.0]}}))
    elif kind == 'a pickled object':
        torch.save({'state_dict': {}, 'model': torch.nn.Linear(2, 2)}, path)  # a module, not its state dict
    elif kind == 'a tensor':
        torch.save(torch.zeros(3), path)


@pytest.mark.parametrize('kind,expected', [
    ('garbage bytes', "starting b'garbage,') is not a PyTorch checkpoint written by torch.save"),
    ('empty file', '(0 bytes, starting b\'\') is not a PyTorch checkpoint written by torch.save'),
    ('truncated download', 'starts like a torch.save zip archive but its end (the zip directory) is missing'),
    ('truncated legacy file', 'Cannot read {src} (truncated or damaged?) as a PyTorch checkpoint written by'),
    ('a pickled object', 'holds objects other than tensors and plain data, which are not unpickled for safety'),
    ('plain pickle', 'is not a PyTorch checkpoint written by torch.save'),
    ('a tensor', 'holds a Tensor, not a checkpoint: expected a dict of tensors'),
])
def test_converter_names_a_file_that_is_not_a_checkpoint(tmp_path, repo, monkeypatch, capsys, kind, expected):
    src = tmp_path / 'dynamixer-s.pth'
    _write_not_a_checkpoint(src, kind)
    status, err = run_converter(monkeypatch, capsys, repo, src, tmp_path / 'out.pth')
    assert status == 2
    assert str(src) in err and expected.format(src=src) in err
    assert 'Traceback' not in err and not (tmp_path / 'out.pth').exists()


def test_converter_on_garbage_prints_one_line(tmp_path, repo, monkeypatch, capsys):
    """Exit status 2 and one line naming the file and what was expected, no traceback (torch.load's own words for
    such a file: ``ValueError: invalid literal for int() with base 10: 'arbage'``)."""
    src = tmp_path / 'model.pth'
    src.write_bytes(b'garbage')
    assert run_converter(monkeypatch, capsys, repo, src, tmp_path / 'out.pth') == (
        2, f"dynamixer_to_mmpretrain.py: error: {src} (7 bytes, starting b'garbage') is not a PyTorch checkpoint "
           f'written by torch.save (a zip archive holding data.pkl, or a legacy pickle)\n')


def test_converter_missing_file_and_missing_ema(tmp_path, repo, monkeypatch, capsys):
    status, err = run_converter(monkeypatch, capsys, repo, tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert status == 2 and f"Checkpoint '{tmp_path / 'nope.pth'}' does not exist" in err

    src = tmp_path / 'no_ema.pth'
    torch.save({'state_dict': DynaMixerNet(TINY_ARCH, num_classes=10).state_dict()}, src)
    status, err = run_converter(monkeypatch, capsys, repo, src, tmp_path / 'out.pth', '--ema')
    assert status == 2 and f'cannot convert {src}: use_ema: the checkpoint has no state_dict_ema' in err


# ---------------------------------------------------------------- mmpretrain -> release


def test_mmpretrain_to_release_inverts_release_to_mmpretrain(repo):
    """A real mmpretrain classifier's state dict maps to the release layout (the release's forward gives the
    classifier's logits) and back to the same keys and tensors."""
    torch.manual_seed(0)
    classifier = perturbed(build_model(classifier_config(repo)))
    state_dict = classifier.state_dict()
    release = mmpretrain_to_release(state_dict)
    reference = RefDynaMixer(TINY_ARCH, 10).eval()
    reference.load_state_dict(release)  # strict
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), classifier(x, mode='tensor'), atol=1e-5, rtol=1e-5)

    back = release_to_mmpretrain(release)
    assert list(back) == list(state_dict)
    assert all(back[k] is state_dict[k] for k in state_dict)


def test_mmpretrain_to_release_refuses_foreign_keys():
    with pytest.raises(ValueError, match=r"Cannot map 'neck\.conv\.weight': expected backbone\.\* or head\.fc\.\*"):
        mmpretrain_to_release({'backbone.norm.weight': torch.ones(2), 'neck.conv.weight': torch.ones(2)})


# ---------------------------------------------------------------- timm


@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_timm_models_have_the_release_layout(arch):
    """timm's dynamixer_{s,m,l}: the release's state dict (strict), its logits (S; tests/test_model.py compares
    the network with the release for every arch), its crop."""
    import timm
    model = perturbed(timm.create_model(f'dynamixer_{arch}'))
    reference = RefDynaMixer(arch_zoo[arch]).eval()
    reference.load_state_dict(model.state_dict())
    assert model.pretrained_cfg['crop_pct'] == (0.875 if arch == 'l' else 0.9)
    if arch == 's':
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)


def test_timm_loads_release_checkpoint(tmp_path):
    """As ``checkpoint_path`` (timm's own unwrapping) and as a pretrained ``file`` (through checkpoint_filter_fn);
    timm prefers the EMA."""
    import timm
    src = tmp_path / 'release.pth'
    _, ema = release_checkpoint(src, arch_zoo['s'], num_classes=1000)
    x = torch.randn(1, 3, 224, 224)
    for how in (dict(checkpoint_path=str(src)), dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(src)))):
        model = timm.create_model('dynamixer_s', **how).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), ema(x), atol=1e-4, rtol=1e-4, msg=str(how))


@pytest.mark.stack
def test_timm_loads_mmpretrain_checkpoint(tmp_path, repo):
    """An mmpretrain classifier's checkpoint as mmengine saves it, as a pretrained ``file``: the classifier's logits."""
    import timm
    torch.manual_seed(0)
    classifier = perturbed(build_model(classifier_config(repo, arch_zoo['s'], num_classes=1000)))
    src = tmp_path / 'mmpretrain.pth'
    torch.save(dict(meta=dict(epoch=3), state_dict=classifier.state_dict()), src)
    model = timm.create_model('dynamixer_s', pretrained=True, pretrained_cfg_overlay=dict(file=str(src))).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), classifier(x, mode='tensor'), atol=1e-4, rtol=1e-4)


def test_timm_filter_maps_release_and_mmpretrain_state_dicts(repo):
    """checkpoint_filter_fn turns both layouts into the timm model's keys: strict loads, the release's logits."""
    release = perturbed(RefDynaMixer(TINY_ARCH, 10))
    classifier = build_model(classifier_config(repo))
    classifier.load_state_dict(release_to_mmpretrain(release.state_dict()))  # strict: every tensor set
    x = torch.randn(2, 3, 56, 56)
    sources = {'release (DDP keys)': {f'module.{k}': v for k, v in release.state_dict().items()},
               'mmpretrain': classifier.state_dict()}
    for name, state_dict in sources.items():
        model = DynaMixerNet(TINY_ARCH, num_classes=10).eval()
        model.load_state_dict(checkpoint_filter_fn(state_dict, model))  # strict
        with torch.no_grad():
            torch.testing.assert_close(model(x), release(x), atol=1e-5, rtol=1e-5, msg=name)


# ---------------------------------------------------------------- the backbone's Pretrained init


def dense_backbone(checkpoint, prefix='backbone.', **kwargs):
    """A DynaMixer backbone as the detection and segmentation configs build it, with a Pretrained init_cfg."""
    cfg = dict(type='DynaMixer', arch=TINY_ARCH, out_indices=(0, 1, 2, 3), final_norm=False,
               init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint), prefix=prefix))
    cfg.update(kwargs)
    return build_model(cfg)


@pytest.fixture
def classifier_checkpoint(tmp_path):
    """An mmpretrain classifier checkpoint of TINY_ARCH (keys ``backbone.*``, ``head.fc.*``)."""
    path = tmp_path / 'dynamixer-tiny_in1k.pth'
    state_dict = release_to_mmpretrain(perturbed(DynaMixerNet(TINY_ARCH, num_classes=10)).state_dict())
    torch.save(dict(meta=dict(epoch=1), state_dict=state_dict), path)
    return path, state_dict


def test_pretrained_loads_classifier_into_dense_backbone(classifier_checkpoint):
    path, source = classifier_checkpoint
    backbone = dense_backbone(path)
    backbone.init_weights()
    loaded = backbone.state_dict()
    new_norms = {k for k in loaded if k.split('.')[0] in ('norm0', 'norm1', 'norm2')}
    assert len(new_norms) == 6
    for key, value in loaded.items():
        if key not in new_norms:  # the classifier's final norm is the last stage's output norm
            assert torch.equal(value, source[f'backbone.{key}'.replace('norm3.', 'norm.')]), key


def _coincidental_checkpoint(path, backbone):
    """Another model's classifier whose few generic names (patch_embed.proj, norm) happen to fit."""
    state = backbone.state_dict()
    foreign = {f'backbone.{k}': state[k].clone() for k in ('patch_embed.proj.weight', 'patch_embed.proj.bias',
                                                          'norm.weight', 'norm.bias')}
    foreign.update({f'backbone.blocks.{i}.attn.qkv.weight': torch.zeros(96, 32) for i in range(12)})
    torch.save(dict(state_dict=foreign), path)


@pytest.mark.parametrize('mistake', ['wrong prefix', 'no prefix', 'another model'])
def test_pretrained_refuses_wrong_file_or_prefix(tmp_path, classifier_checkpoint, mistake):
    path, _ = classifier_checkpoint
    prefix = {'wrong prefix': 'model.backbone.', 'no prefix': None, 'another model': 'backbone.'}[mistake]
    kwargs = dict(final_norm=True, out_indices=(3,)) if mistake == 'another model' else {}
    backbone = dense_backbone(path, prefix=prefix, **kwargs)
    if mistake == 'another model':
        path = tmp_path / 'vit-small_in1k.pth'
        _coincidental_checkpoint(path, backbone)
        backbone = dense_backbone(path, prefix=prefix, **kwargs)
    num_tensors = sum(1 for k in backbone.state_dict() if not k.startswith(('norm0', 'norm1', 'norm2', 'norm3')))
    found = 4 if mistake == 'another model' else 0
    with pytest.raises(ValueError) as error:
        backbone.init_weights()
    message = str(error.value)
    assert f"checkpoint='{path}', prefix={prefix!r}" in message
    assert f"only {found} of the backbone's {num_tensors} tensors" in message
    assert "expects e.g. ['patch_embed.proj.weight'" in message
    assert "its keys are e.g. ['backbone.patch_embed.proj.weight'" in message


@pytest.mark.parametrize('fraction,loads', [(0.4, False), (0.6, True)])
def test_pretrained_threshold_is_half_of_the_backbone(classifier_checkpoint, tmp_path, fraction, loads):
    path, source = classifier_checkpoint
    backbone_keys = [k for k in source if k.startswith('backbone.')]
    kept = backbone_keys[:int(fraction * len(backbone_keys))]
    partial = tmp_path / 'partial.pth'
    torch.save(dict(state_dict={k: source[k] for k in kept}), partial)
    backbone = dense_backbone(partial, final_norm=True, out_indices=(3,))
    assert len(backbone.state_dict()) == len(backbone_keys)
    if loads:
        backbone.init_weights()
        assert all(torch.equal(backbone.state_dict()[k[len('backbone.'):]], source[k]) for k in kept)
    else:
        with pytest.raises(ValueError, match=f"only {len(kept)} of the backbone's {len(backbone_keys)} tensors"):
            backbone.init_weights()


def test_pretrained_missing_or_garbage_file_is_named(tmp_path):
    missing = tmp_path / 'checkpoints' / 'dynamixer-s_in1k.pth'
    expected = f"checkpoint='{missing}', prefix='backbone.': Checkpoint '{missing}' does not exist"
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        dense_backbone(missing).init_weights()
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('garbage')
    with pytest.raises(ValueError, match='is not a PyTorch checkpoint written by torch.save'):
        dense_backbone(garbage).init_weights()
