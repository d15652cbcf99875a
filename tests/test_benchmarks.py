"""The analysis tools run on small archs and report what an independent measurement confirms."""
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from mmdynamixer.models import DynaMixerNet
from mmdynamixer.testing import TINY_ARCH, tool_env

REPO = Path(__file__).resolve().parents[1]

TOOLS = REPO / 'tools' / 'analysis'
# Wide enough that AdamW's state (2 x 4 bytes per parameter, ~9 MiB) stands well above page-level noise.
WIDE_ARCH = dict(TINY_ARCH, embed_dims=[64, 128, 128, 128], num_segments=[4, 8, 8, 8])


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_flops_linear_in_pixels(tmp_path, capsys):
    """With windows of L tokens, all but the per-image costs grow with the pixels: 112 px costs 4x 56 px.

    Per image: the head and each block's re-weighting MLP (D -> D/4 -> 3D on the mean-pooled features)."""
    get_flops = load_tool('get_flops')
    rows = {}
    for size in (56, 112):
        out = tmp_path / f'{size}.json'
        get_flops.main(['--arch', json.dumps(TINY_ARCH), '--size', str(size), '--num-classes', '10',
                        '--json', str(out)])
        [rows[size]] = json.loads(out.read_text())
    per_image = TINY_ARCH['embed_dims'][-1] * 10 + sum(
        layers * dim * dim for layers, dim in zip(TINY_ARCH['layers'], TINY_ARCH['embed_dims']))
    assert rows[112]['flops'] - per_image == pytest.approx(4 * (rows[56]['flops'] - per_image), rel=1e-5)
    assert rows[56]['params'] == rows[112]['params'] == sum(
        p.numel() for p in DynaMixerNet(TINY_ARCH, num_classes=10).parameters())
    table = capsys.readouterr().out
    assert f"| custom | {rows[56]['params'] / 1e6:.2f} | {rows[56]['flops'] / 1e9:.3f} |" in table


def test_get_flops_names_a_bad_arch(capsys):
    with pytest.raises(SystemExit):
        load_tool('get_flops').main(['--arch', 'xl'])
    assert "Unknown DynaMixer arch 'xl'; allowed: ['l', 'm', 's']" in capsys.readouterr().err


def test_benchmark_speed_and_memory(tmp_path):
    out = tmp_path / 'bench.json'
    cmd = [sys.executable, str(TOOLS / 'benchmark.py'), '--arch', json.dumps(WIDE_ARCH), '--size', '56', '--batch', '2',
           '--mode', 'infer', 'train', '--warmup', '1', '--repeat', '2', '--threads', '1', '--json', str(out)]
    started = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, env=tool_env(), capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report['environment']) >= {'device', 'torch', 'loadavg_before', 'loadavg_after'}
    rows = {r['mode']: r for r in report['results']}
    assert set(rows) == {'infer', 'train'}
    param_bytes = 4 * sum(p.numel() for p in DynaMixerNet(WIDE_ARCH).parameters())
    for name in ('ours', 'release'):
        for row in rows.values():
            assert len(row[f'{name}_step_s']) == 2 and 0 < sum(row[f'{name}_step_s']) < wall
        # At its peak a training step holds the gradients and AdamW's two moments, on top of what
        # inference needs; a baseline taken after the warm-up would miss the moments.
        assert rows['train'][f'{name}_peak_mib'] * 2**20 >= 3 * param_bytes
        assert rows['train'][f'{name}_peak_mib'] > rows['infer'][f'{name}_peak_mib'] > 0
    # The multiply-adds per image, counted independently by torch's FlopCounterMode (2 FLOPs per multiply-add) on
    # F.linear (oneDNN off: torch cannot see into that custom op); LayerNorm and the like are not counted there.
    model = DynaMixerNet(WIDE_ARCH).eval()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 56, 56))
    assert rows['train']['gflops_per_image'] == pytest.approx(counter.get_total_flops() / 2e9, rel=0.02)
    assert f"| custom | train | fp32 | False | 2 | {rows['train']['ours_img_s']:.2f} |" in run.stdout


def test_generated_jpegs_weigh_like_imagenet(tmp_path):
    """ImageNet's train JPEGs average about 110 KB; decoding cost follows size and entropy."""
    mean_kib = load_tool('benchmark_pipeline').write_images(tmp_path, 4, (500, 375), 90)
    files = sorted(tmp_path.rglob('*.JPEG'))
    assert len(files) == 4 and Image.open(files[0]).size == (500, 375)
    assert 90 < mean_kib < 130
    assert mean_kib == pytest.approx(np.mean([f.stat().st_size for f in files]) / 1024)


def test_benchmark_pipeline(tmp_path):
    out = tmp_path / 'pipeline.json'
    cmd = [sys.executable, str(TOOLS / 'benchmark_pipeline.py'), '--images', '12', '--batch', '4', '--workers', '1',
           '--epochs', '2', '--repeat', '1', '--image-size', '160x120', '--json', str(out)]
    run = subprocess.run(cmd, cwd=REPO, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    pipeline = Config.fromfile(REPO / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py').train_pipeline
    assert [name.split('(')[0] for name in report['transforms_ms_per_image']] == [t['type'] for t in pipeline]
    assert 'RandomChoice(RandomResizedCrop)' in report['transforms_ms_per_image']
    [loader] = report['loaders']
    # 3 batches per epoch; 2 epochs with fresh workers and 2 with persistent ones, the first of which is fresh.
    assert loader['workers'] == 1 and len(loader['img_s_runs']) == 4
    assert len(loader['first_batch_fresh_runs']) == 3 and len(loader['first_batch_reused_runs']) == 1
    assert loader['img_s'] > 0
    assert loader['iter_fresh_s'] > 0 and loader['iter_reused_s'] > 0
    assert set(report['preprocessor_ms_per_batch']) == {'normalise', 'Mixup', 'CutMix'}
    assert '| RandAugment |' in run.stdout and '| 1 |' in run.stdout and 'on top of that Mixup' in run.stdout


def test_benchmark_pipeline_needs_more_batches_than_workers(capsys):
    with pytest.raises(SystemExit):
        load_tool('benchmark_pipeline').main(['--images', '8', '--batch', '4', '--workers', '1', '2'])
    assert '2 batches per epoch: need more than --workers 2' in capsys.readouterr().err
