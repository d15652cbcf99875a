"""Release checkpoints: conversion to mmpretrain (CLI round trip) and direct loading into timm."""
import argparse
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmdynamixer.checkpoints import release_to_mmpretrain
from mmdynamixer.models import arch_zoo
from mmdynamixer.testing.release_reference import RefDynaMixer
from mmdynamixer.testing import build_mmpretrain_model as build_model
from mmdynamixer.testing import TINY_ARCH, perturbed

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


def build_classifier(repo, checkpoint, num_classes=10):
    cfg = Config.fromfile(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py')
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.update(num_classes=num_classes, in_channels=32)
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    model = build_model(cfg.model)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('ema', [False, True])
def test_converter_round_trip(tmp_path, repo, ema):
    src, dst = tmp_path / 'release.pth', tmp_path / 'mmpretrain.pth'
    weights, ema_weights = release_checkpoint(src)
    cmd = [sys.executable, CONVERTER, str(src), str(dst)] + (['--ema'] if ema else [])
    subprocess.run(cmd, cwd=repo, check=True)

    converted = torch.load(dst, weights_only=True)['state_dict']
    model = build_classifier(repo, dst)
    result = model.load_state_dict(converted, strict=False)
    assert not result.missing_keys and not result.unexpected_keys

    expected = (ema_weights if ema else weights)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), expected(x), atol=1e-5, rtol=1e-5)


def test_converter_rejects_other_models(tmp_path, repo):
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'patch_embed.proj.weight': torch.zeros(1), 'layer1.0.conv1.weight': torch.zeros(1)}},
               src)
    run = subprocess.run([sys.executable, CONVERTER, str(src), str(tmp_path / 'out.pth')], cwd=repo,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "Cannot map 'layer1.0.conv1.weight'" in run.stderr
    with pytest.raises(KeyError, match='Not a DynaMixer release checkpoint: no patch_embed.proj.weight'):
        release_to_mmpretrain({'conv1.weight': torch.zeros(1)})


@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_timm_models_match_release(arch):
    import timm
    model = perturbed(timm.create_model(f'dynamixer_{arch}'))
    reference = RefDynaMixer(arch_zoo[arch]).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)
    assert model.pretrained_cfg['crop_pct'] == (0.875 if arch == 'l' else 0.9)


def test_timm_loads_release_checkpoint_directly(tmp_path):
    import timm
    src = tmp_path / 'release.pth'
    _, ema = release_checkpoint(src, arch_zoo['s'], num_classes=1000)
    model = timm.create_model('dynamixer_s', checkpoint_path=str(src)).eval()  # timm prefers the EMA
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ema(x), atol=1e-4, rtol=1e-4)
