"""The measuring harness (mmdynamixer.benchmarking), the FLOP count (mmdynamixer.analysis) and the analysis tools
that use them, each run on its real path with a tiny arch; expected values come from clocks, sleeps, steps of
scripted duration (conftest's ``scripted_timing``), allocations and hand counts, not from the code under test."""
import functools
import json
import runpy
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdynamixer import benchmarking
from mmdynamixer.analysis import complexity
from mmdynamixer.testing import TINY_ARCH, tool_env

from conftest import REPO, SCRIPTED_SECONDS

TOOLS = REPO / 'tools' / 'analysis'
# Wide enough that AdamW's state (2 x 4 bytes per parameter, ~9 MiB) stands well above page-level noise.
WIDE_ARCH = dict(TINY_ARCH, embed_dims=[64, 128, 128, 128], num_segments=[4, 8, 8, 8])
# TINY_ARCH with M's strides (7, 7, 14, 14): the dense outputs are then stages 1 and 3.
TINY_M_LAYOUT = dict(TINY_ARCH, resolutions=[8, 8, 4, 4], transitions=[False, True, False, False])


def run_tool_with_scripted_timing(tool, *args):
    """Runs a tool as a script in a fresh process (its CPU memory measurement pickles the tool's functions) with
    ``conftest.scripted_timing_patches`` installed; the run's stdout."""
    script = (f'import runpy, sys\n'
              f'sys.path.insert(0, {str(REPO / "tests")!r})\n'
              f'import conftest, mmdynamixer.benchmarking\n'
              f'vars(mmdynamixer.benchmarking).update(conftest.scripted_timing_patches())\n'
              f'sys.argv = {[tool, *map(str, args)]!r}\n'
              f'runpy.run_path({str(TOOLS / tool)!r}, run_name="__main__")\n')
    return run_tool('-c', script).stdout


def run_tool(*args, timeout=600):
    run = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=tool_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_alternate_times_rounds_in_turn_and_reports_medians():
    """Warm-up steps are untimed, then one timed step of each in turn per round; the median ignores an outlier."""
    now, order = [0.0], []
    durations = {'ours': iter([50.0, 1.0, 100.0, 2.0]), 'release': iter([60.0, 5.0, 5.0, 40.0])}

    def step(name):
        order.append(name)
        now[0] += next(durations[name])

    steps = {name: functools.partial(step, name) for name in durations}
    times = benchmarking.alternate(steps, 'cpu', warmup=1, repeat=3, clock=lambda: now[0])
    assert order == ['ours', 'release'] * 4
    assert times['ours'].seconds == [1.0, 100.0, 2.0] and times['release'].seconds == [5.0, 5.0, 40.0]
    assert (times['ours'].median, times['ours'].fastest, times['release'].median) == (2.0, 1.0, 5.0)


@pytest.mark.parametrize('device, expected', [
    ('cuda', ['sync', 'clock', 'step', 'sync', 'clock']),
    ('cpu', ['clock', 'step', 'clock']),
])
def test_a_timed_step_ends_when_the_device_is_done(monkeypatch, device, expected):
    """On CUDA the clock is read only after synchronising, before and after the step (which only queues work)."""
    events = []
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda device=None: events.append('sync'))
    benchmarking.time_step(lambda: events.append('step'), torch.device(device),
                           clock=lambda: events.append('clock') or 0.0)
    assert events == expected


def test_a_sleeping_step_measures_its_sleep():
    times = benchmarking.alternate({'20 ms': functools.partial(time.sleep, 0.02),
                                    '60 ms': functools.partial(time.sleep, 0.06)}, 'cpu', warmup=1, repeat=5)
    assert 0.02 <= times['20 ms'].median < 0.035
    assert 0.06 <= times['60 ms'].median < 0.075


def test_time_for_runs_until_the_time_is_spent():
    now = [0.0]

    def step():
        now[0] += 0.3

    times = benchmarking.time_for(step, 'cpu', min_time=1.0, max_steps=20, min_steps=2, clock=lambda: now[0])
    assert len(times.seconds) == 4  # 0.9 s after three steps, 1.2 s after four
    assert len(benchmarking.time_for(step, 'cpu', 100.0, max_steps=5, clock=lambda: now[0]).seconds) == 5


def test_fresh_process_peak_is_what_the_step_allocates():
    """A step that fills 96 MiB peaks at 96 MiB over the process before it, whatever the parent holds."""
    held_by_parent = torch.ones(64 * 2**18)  # 64 MiB in this process: not the step's
    make_step = functools.partial(functools.partial, torch.ones, 96 * 2**18)
    peak = benchmarking.fresh_process_peak_mib(make_step, warmup=1, threads=1)
    assert 96 <= peak < 96 + 8
    assert benchmarking.fresh_process_peak_mib(functools.partial(functools.partial, torch.ones, 1), 1) < 8
    del held_by_parent


@pytest.mark.parametrize('size', [(56, 56), (112, 112), (56, 112)])
def test_flop_count_equals_a_hand_count(hand_count_macs, hand_count_params, size):
    """112 px: two windows of L tokens per row and column at each stage."""
    counts = complexity(TINY_ARCH, size, num_classes=10)
    assert counts['flops'] == hand_count_macs(TINY_ARCH, *size, num_classes=10)
    assert counts['params'] == hand_count_params(TINY_ARCH, num_classes=10)


def test_get_flops_prints_and_writes_the_count(tmp_path, capsys, hand_count_macs, hand_count_params):
    get_flops = runpy.run_path(str(TOOLS / 'get_flops.py'))
    out = tmp_path / 'flops.json'
    get_flops['main'](['--arch', json.dumps(TINY_ARCH), '--size', '56', '112', '--num-classes', '10',
                       '--out-file', str(out)])
    [row] = json.loads(out.read_text())
    macs, params = hand_count_macs(TINY_ARCH, 56, 112, 10), hand_count_params(TINY_ARCH, 10)
    assert (row['height'], row['width'], row['flops'], row['params']) == (56, 112, macs, params)
    assert f"| custom | {params / 1e6:.2f} | {macs / 1e9:.3f} |" in capsys.readouterr().out
    with pytest.warns(FutureWarning, match='--json is deprecated'):
        get_flops['main'](['--arch', json.dumps(TINY_ARCH), '--size', '56', '--json', str(out)])
    assert json.loads(out.read_text())[0]['flops'] == hand_count_macs(TINY_ARCH, 56, 56, 1000)


def test_get_flops_names_a_bad_arch(capsys):
    with pytest.raises(SystemExit):
        runpy.run_path(str(TOOLS / 'get_flops.py'))['main'](['--arch', 'xl'])
    assert "unknown DynaMixer arch 'xl'; allowed: l, m, s or a JSON arch dict" in capsys.readouterr().err


@pytest.mark.parametrize('tool, flags', [
    ('benchmark', ['--arch', '--size', '--precision', '--device', '--out-file']),
    ('benchmark_dense', ['--arch', '--sizes', '--device', '--out-file']),
    ('benchmark_pipeline', ['--size', '--out-file']),
    ('gpu_check', ['--arch', '--precision', '--device', '--out-dir']),
    ('profile_model', ['--arch', '--size', '--out-file']),
    ('get_flops', ['--arch', '--size', '--out-file']),
])
def test_help_shows_the_flag_vocabulary(monkeypatch, capsys, tool, flags):
    monkeypatch.setattr(sys, 'argv', [f'{tool}.py', '--help'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TOOLS / f'{tool}.py'), run_name='__main__')
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert [flag for flag in flags if f'{flag} ' not in shown] == []


def test_benchmark_speed_memory_flops_and_onnxruntime(tmp_path, hand_count_macs, hand_count_params):
    """Every step takes the scripted seconds (median 0.25 s): 2 images a step are 8 img/s, and a training step's
    GFLOP/s 8 x 3 x 2 x the hand count of multiply-adds; memory is measured for real."""
    out = tmp_path / 'bench.json'
    stdout = run_tool_with_scripted_timing(
        'benchmark.py', '--arch', json.dumps(WIDE_ARCH), '--size', '56', '--batch', '2', '--mode', 'infer', 'train',
        '--warmup', '1', '--repeat', '3', '--threads', '1', '--onnxruntime', 'static', '--device', 'cpu',
        '--out-file', out)
    report = json.loads(out.read_text())
    rows = {r['mode']: r for r in report['results']}
    assert set(rows) == {'infer', 'train'}
    macs = hand_count_macs(WIDE_ARCH, 56, 56, 1000)
    param_bytes = 4 * hand_count_params(WIDE_ARCH, 1000)
    for name in ('ours', 'release'):
        for row in rows.values():
            assert sorted(row[f'{name}_step_s']) == sorted(SCRIPTED_SECONDS)
            assert row[f'{name}_img_s'] == 8.0
        # At its peak a training step holds the gradients and AdamW's two moments, on top of what
        # inference needs; a baseline taken after the warm-up would miss the moments.
        assert rows['train'][f'{name}_peak_mib'] * 2**20 >= 3 * param_bytes
        assert rows['train'][f'{name}_peak_mib'] > rows['infer'][f'{name}_peak_mib'] > 0
    assert sorted(rows['infer']['ort_static_step_s']) == sorted(SCRIPTED_SECONDS)
    assert rows['infer']['ort_static_img_s'] == 8.0 and rows['infer']['ort_static_peak_mib'] > 0
    assert 'ort_static_img_s' not in rows['train']
    assert rows['train']['macs_per_image'] == rows['infer']['macs_per_image'] == macs
    assert rows['train']['ours_gflop_s'] == pytest.approx(8 * 3 * 2 * macs / 1e9)
    assert rows['infer']['ours_gflop_s'] == pytest.approx(8 * 2 * macs / 1e9)
    assert '| custom | train | fp32 | False | 2 | 8.00 | 8.00 | 1.00 |' in stdout


def test_benchmark_refuses_a_size_the_release_cannot_run(capsys):
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(TOOLS / 'benchmark.py'))['main'](['--arch', 's', '--size', '448'])
    assert exit_.value.code == 2
    assert "--size 448 448: the release's forward of arch S runs only at 224 224" in capsys.readouterr().err


def test_benchmark_dense_times_and_measures_each_size(tmp_path):
    """Forwards of the scripted seconds: 125 ms the fastest, 250 ms the median, at every size."""
    out = tmp_path / 'dense.json'
    run_tool_with_scripted_timing('benchmark_dense.py', '--arch', json.dumps(TINY_ARCH), json.dumps(TINY_M_LAYOUT),
                                  '--sizes', '56x56', '70x126', '--warmup', '1', '--repeat', '3', '--threads', '1',
                                  '--device', 'cpu', '--out-file', out)
    tiny, m_layout = json.loads(out.read_text())
    assert tiny['out_indices'] == [0, 3] and m_layout['out_indices'] == [1, 3]
    for row in tiny['rows'] + m_layout['rows']:
        assert sorted(row['ms']) == [1e3 * t for t in sorted(SCRIPTED_SECONDS)]
        assert (row['ms_min'], row['ms_median']) == (125.0, 250.0)
        assert row['peak_mib'] > 0
    assert [(r['height'], r['width']) for r in tiny['rows']] == [(56, 56), (70, 126)]


def test_profile_model_splits_both_implementations_by_category(tmp_path):
    out = tmp_path / 'profile.json'
    run = run_tool(TOOLS / 'profile_model.py', '--arch', json.dumps(TINY_ARCH), '--size', '56', '--batch', '2',
                   '--mode', 'infer', '--threads', '1', '--steps', '2', '--out-file', out)
    [report] = json.loads(out.read_text())
    for name in ('ours', 'release'):
        assert report['ms_by_category'][name]['matmul'] > 0
        assert sum(report['ms_by_category'][name].values()) == pytest.approx(sum(report['ms_by_op'][name].values()))
    assert '| matmul |' in run.stdout and '| **total** |' in run.stdout


def test_generated_jpegs_weigh_like_imagenet(tmp_path):
    """ImageNet's train JPEGs average about 110 KB; decoding cost follows size and entropy."""
    write_images = runpy.run_path(str(TOOLS / 'benchmark_pipeline.py'))['write_images']
    mean_kib = write_images(tmp_path, 4, (375, 500), 90)
    files = sorted(tmp_path.rglob('*.JPEG'))
    assert len(files) == 4 and Image.open(files[0]).size == (500, 375)  # PIL: width, height
    assert 90 < mean_kib < 130
    assert mean_kib == pytest.approx(sum(f.stat().st_size for f in files) / 4 / 1024)


def test_benchmark_pipeline(tmp_path):
    out = tmp_path / 'pipeline.json'
    run = run_tool(TOOLS / 'benchmark_pipeline.py', '--images', '12', '--batch', '4', '--workers', '1',
                   '--epochs', '2', '--repeat', '1', '--size', '120', '160', '--out-file', out)
    report = json.loads(out.read_text())
    assert (report['height'], report['width']) == (120, 160)
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
    assert '12 JPEGs of 160 x 120 (width x height)' in run.stdout


def test_benchmark_pipeline_old_image_size_flag_keeps_width_first():
    parse_args = runpy.run_path(str(TOOLS / 'benchmark_pipeline.py'))['parse_args']
    with pytest.warns(FutureWarning, match='--image-size is deprecated'):
        args = parse_args(['--image-size', '160x120', '--images', '12', '--batch', '4', '--workers', '1'])
    assert args.size == (120, 160)


def test_benchmark_pipeline_needs_more_batches_than_workers(capsys):
    with pytest.raises(SystemExit):
        runpy.run_path(str(TOOLS / 'benchmark_pipeline.py'))['main'](
            ['--images', '8', '--batch', '4', '--workers', '1', '2'])
    assert '2 batches per epoch: need more than --workers 2' in capsys.readouterr().err


def test_anchor_coverage_finds_boxes_under_the_smallest_anchor(tmp_path, capsys):
    """On a 126 x 126 image, a 32 x 32 box centred on the stride-7 grid matches the smallest COCO-sized anchor
    (32 px) exactly, and a 16 x 16 box on the same centre reaches IoU 16^2 / 32^2 = 0.25 at best: one box in two
    under RetinaNet's 0.5 and 0.4. Anchors of half the size (octave_base_scale 16/7) match both exactly."""
    annotations = tmp_path / 'instances.json'
    annotations.write_text(json.dumps(dict(
        images=[dict(id=1, width=126, height=126, file_name='1.png')],
        annotations=[dict(id=1, image_id=1, bbox=[12, 12, 32, 32]), dict(id=2, image_id=1, bbox=[20, 20, 16, 16])],
        categories=[dict(id=1, name='0')])))
    coverage = runpy.run_path(str(TOOLS / 'anchor_coverage.py'))
    config = str(REPO / 'configs/dynamixer/retinanet_dynamixer-tiny_fpn_digit-scenes.py')
    coverage['main']([config, str(annotations)])
    out = capsys.readouterr().out
    assert 'best anchor IoU: median 0.625' in out
    assert 'under pos_iou_thr 0.5: 50.0 % of the boxes' in out
    assert 'under neg_iou_thr 0.4: 50.0 % of the boxes' in out
    coverage['main']([config, str(annotations), '--cfg-options',
                      f'model.bbox_head.anchor_generator.octave_base_scale={16 / 7}'])
    out = capsys.readouterr().out
    assert 'best anchor IoU: median 1.000' in out and 'under neg_iou_thr 0.4: 0.0 % of the boxes' in out


def test_anchor_coverage_names_a_config_without_anchors(tmp_path, capsys):
    annotations = tmp_path / 'instances.json'
    annotations.write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    coverage = runpy.run_path(str(TOOLS / 'anchor_coverage.py'))
    config = str(REPO / 'configs/dynamixer/fpn_dynamixer-tiny_digit-scenes.py')
    with pytest.raises(SystemExit):
        coverage['main']([config, str(annotations)])
    assert 'has no bbox_head or rpn_head with an anchor_generator' in capsys.readouterr().err
