"""tools/analysis/gpu_check.py: the --quick run without the OpenMMLab stack, its report and verdict, its rates from
steps of scripted duration, its old flags, its out-of-memory halving, and the FLOP count its TFLOP/s rest on against
the paper and an independent count."""
import json
import os
import runpy
import subprocess
import sys

import pytest
import torch
from mmengine.analysis import FlopAnalyzer

from conftest import REPO
from mmdynamixer.analysis import complexity
from mmdynamixer.models import DynaMixerNet, arch_zoo
from mmdynamixer.release_reference import RefDynaMixer

TOOL = str(REPO / 'tools/analysis/gpu_check.py')
# What the lent GPU machines lack: the check must import none of it.
NOT_ON_GPU_MACHINES = ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'timm', 'torchvision', 'onnxruntime',
                       'numpy')


@pytest.fixture
def gpu_check():
    return runpy.run_path(TOOL)


def test_quick_run_without_openmmlab_writes_json_and_markdown(tmp_path):
    blocked = ', '.join(repr(name) for name in NOT_ON_GPU_MACHINES)
    script = (f'import runpy, sys\n'
              f'sys.modules.update(dict.fromkeys([{blocked}]))  # None: "import mmengine" raises ImportError\n'
              f'sys.argv = ["gpu_check.py", "--quick", "--device", "cpu", "--out-dir", {str(tmp_path)!r}]\n'
              f'runpy.run_path({TOOL!r}, run_name="__main__")\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['ok'] is True and report['env']['quick'] is True and report['env']['device'] == 'cpu'
    assert sorted(report['matmul_peak_tflops']) == ['bf16', 'fp32']
    rows = report['rows']
    assert {(r['impl'], r['mode'], r['precision']) for r in rows} == {
        (impl, mode, precision) for impl in ('ours', 'release') for mode in ('infer', 'train')
        for precision in ('fp32', 'bf16')}
    for row in rows:
        assert row['status'] == 'done' and row['arch'] == 'tiny' and row['compile'] is False
        assert row['batch'] == 2 and row['oom_halvings'] == 0 and row['finite'] is True
        assert len(row['step_s']) == 3 and row['images_per_s'] > 0
        assert row['peak_memory_mib'] is None  # CPU: not measured
    # Ours against the release's float32 logits: to rounding in float32, within a few percent in bfloat16.
    for row in rows:
        if row['impl'] == 'ours':
            assert row['rel_diff'] <= (1e-5 if row['precision'] == 'fp32' else 5e-2)
    assert {(s['mode'], s['precision']) for s in report['speedups']} == {
        (mode, precision) for mode in ('infer', 'train') for precision in ('fp32', 'bf16')}

    table = (tmp_path / 'gpu_check.md').read_text()
    assert ('| arch | mode | precision | compile | impl | batch | img/s | TFLOP/s | % of peak | peak MiB '
            '| rel diff | ok |') in table
    body = [line for line in table.splitlines() if line.startswith('| tiny |') and line.count('|') == 13]
    assert len(body) == len(rows) and all(line.endswith('| yes |') for line in body)


def test_rates_of_steps_of_known_duration(tmp_path, gpu_check, scripted_timing, hand_count_macs):
    """Every timed step (the matmul's and each row's) takes the scripted seconds, median 0.25 s: a row of 2 images is
    8 img/s, its TFLOP/s 8 x 2 x the hand count of multiply-adds of the quick arch at 56 px (x 3 for training), the
    matmul peak 2 x 256^3 FLOPs in 0.25 s, and the fraction of peak the ratio of the two."""
    assert gpu_check['main'](['--quick', '--device', 'cpu', '--precision', 'fp32', '--out-dir', str(tmp_path)]) == 0
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['env']['matmul_size'] == 256
    peak = 2 * 256 ** 3 / 0.25 / 1e12
    assert report['matmul_peak_tflops'] == pytest.approx({'fp32': peak})
    forward_flops = 2 * hand_count_macs(gpu_check['TINY_ARCH'], 56, 56, 1000)
    assert len(report['rows']) == 4
    for row in report['rows']:
        tflops = 8 * forward_flops * (3 if row['mode'] == 'train' else 1) / 1e12
        assert sorted(row['step_s']) == sorted(scripted_timing)
        assert (row['images_per_s'], row['tflops'], row['peak_fraction']) == pytest.approx((8, tflops, tflops / peak))
    assert [s['ours_over_release'] for s in report['speedups']] == pytest.approx([1.0, 1.0])
    assert '| tiny | train | fp32 | no | ours | 2 | 8.0 |' in (tmp_path / 'gpu_check.md').read_text()


def test_ours_straying_from_the_release_fails_the_check(tmp_path, gpu_check, monkeypatch):
    """Logits 1 % off the release's (beyond fp32's 1e-3): the row is not ok and the check exits 1."""

    class Strayed(DynaMixerNet):
        def forward(self, x):
            return super().forward(x) * 1.01

    monkeypatch.setitem(gpu_check['build'].__globals__, 'DynaMixerNet', Strayed)
    status = gpu_check['main'](['--quick', '--device', 'cpu', '--precision', 'fp32', '--out-dir', str(tmp_path)])
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert status == 1 and report['ok'] is False
    assert {row['impl']: row['ok'] for row in report['rows'] if row['mode'] == 'infer'} == {'ours': False,
                                                                                            'release': True}
    assert all(row['rel_diff'] == pytest.approx(0.01, rel=1e-3) for row in report['rows'] if row['impl'] == 'ours')


def test_rows_past_the_time_budget_are_skipped(tmp_path, gpu_check):
    assert gpu_check['main'](['--quick', '--device', 'cpu', '--budget-s', '0', '--out-dir', str(tmp_path)]) == 0
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert {row['status'] for row in report['rows']} == {'skipped (time budget)'}
    assert 'skipped (time budget)' in (tmp_path / 'gpu_check.md').read_text()


def test_old_flags_still_work_with_a_warning(gpu_check):
    with pytest.warns(FutureWarning) as warned:
        args = gpu_check['parse_args'](['--archs', 's', 'l', '--precisions', 'fp32', '--device', 'cuda'])
    assert args.arch == ['s', 'l'] and args.precision == ['fp32']
    assert sorted(str(w.message).split()[0] for w in warned) == ['--archs', '--precisions']


def test_full_check_refuses_a_cpu_device(gpu_check, capsys):
    with pytest.raises(SystemExit):
        gpu_check['parse_args'](['--device', 'cpu'])
    assert '--device cpu: the full check needs a CUDA device' in capsys.readouterr().err


def test_out_of_memory_halves_the_batch_and_is_recorded(gpu_check, monkeypatch):
    tried = []

    def fake_measure(row, arch, state, device, args, batch, reference_cache):
        tried.append(batch)
        if batch > 64:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        row.update(status='done', batch=batch)
        return row

    monkeypatch.setitem(gpu_check['run_row'].__globals__, 'measure', fake_measure)
    row = dict(requested_batch=256, oom_halvings=0)
    gpu_check['run_row'](row, 's', {}, torch.device('cpu'), None, {})
    assert tried == [256, 128, 64]
    assert (row['batch'], row['oom_halvings']) == (64, 2)


def test_flop_count_matches_the_paper_and_flopanalyzer_on_the_release():
    """The TFLOP/s of the GPU rows rest on analysis.complexity: for S at 224 it gives the paper's 7.32 GMACs and
    exactly what mmengine's FlopAnalyzer counts on the release's forward (an independent implementation and
    counter)."""
    counted = complexity('s', (224, 224))['flops']
    analyzer = FlopAnalyzer(RefDynaMixer(dict(arch_zoo['s'])).eval(), (torch.zeros(1, 3, 224, 224),))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert counted == analyzer.total()
    assert counted / 1e9 == pytest.approx(7.32, abs=0.01)
