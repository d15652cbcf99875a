"""tools/analysis/gpu_check.py: the --quick CPU run of the GPU check, its report, and its out-of-memory halving."""
import importlib.util
import json
import os
import subprocess
import sys

import torch

from conftest import REPO
from mmdynamixer.models import arch_zoo

spec = importlib.util.spec_from_file_location('gpu_check', REPO / 'tools/analysis/gpu_check.py')
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

# What the lent GPU machines lack: the check must import none of it.
OPENMMLAB = ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg')


def test_quick_run_without_openmmlab_writes_json_and_markdown(tmp_path):
    blocked = ', '.join(repr(name) for name in OPENMMLAB)
    script = (f'import runpy, sys\n'
              f'sys.modules.update(dict.fromkeys([{blocked}]))  # None: "import mmengine" raises ImportError\n'
              f'sys.argv = ["gpu_check.py", "--quick", "--out-dir", {str(tmp_path)!r}]\n'
              f'runpy.run_path({str(REPO / "tools/analysis/gpu_check.py")!r}, run_name="__main__")\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['ok'] is True and report['env']['quick'] is True and report['env']['device'] == 'cpu'
    assert sorted(report['matmul_peak_tflops']) == ['bf16', 'fp32']
    assert all(value > 0 for value in report['matmul_peak_tflops'].values())
    rows = report['rows']
    assert {(r['impl'], r['mode'], r['precision']) for r in rows} == {
        (impl, mode, precision) for impl in ('ours', 'release') for mode in ('infer', 'train')
        for precision in ('fp32', 'bf16')}
    for row in rows:
        assert row['status'] == 'done' and row['arch'] == 'tiny' and row['compile'] is False
        assert row['batch'] == 2 and row['oom_halvings'] == 0 and row['finite'] is True
        assert row['images_per_s'] > 0 and row['tflops'] > 0 and 0 < row['peak_fraction']
        assert row['peak_memory_mib'] is None  # CPU: not measured
        # float32 agrees with the release to rounding; bfloat16 autocast within a few percent
        assert row['rel_diff'] <= (1e-5 if row['precision'] == 'fp32' else 5e-2)
    release_fp32 = [r for r in rows if r['impl'] == 'release' and r['precision'] == 'fp32']
    assert all(r['rel_diff'] == 0 for r in release_fp32)  # the reference itself
    assert {(s['mode'], s['precision']) for s in report['speedups']} == {
        (mode, precision) for mode in ('infer', 'train') for precision in ('fp32', 'bf16')}

    table = (tmp_path / 'gpu_check.md').read_text()
    header = ('| arch | mode | precision | compile | impl | batch | img/s | TFLOP/s | % of peak | peak MiB '
              '| rel diff | ok |')
    assert header in table
    body = [line for line in table.splitlines() if line.startswith('| tiny |') and line.count('|') == 13]
    assert len(body) == len(rows) and all(line.endswith('| yes |') for line in body)


def test_rows_past_the_time_budget_are_skipped(tmp_path):
    assert gpu_check.main(['--quick', '--budget-s', '0', '--out-dir', str(tmp_path)]) == 0
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert {row['status'] for row in report['rows']} == {'skipped (time budget)'}
    assert 'skipped (time budget)' in (tmp_path / 'gpu_check.md').read_text()


def test_out_of_memory_halves_the_batch_and_is_recorded(monkeypatch):
    tried = []

    def fake_measure(row, arch, state, device, args, batch, reference_cache):
        tried.append(batch)
        if batch > 64:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        row.update(status='done', batch=batch)
        return row

    monkeypatch.setattr(gpu_check, 'measure', fake_measure)
    row = dict(requested_batch=256, oom_halvings=0)
    gpu_check.run_row(row, 's', {}, torch.device('cpu'), None, {})
    assert tried == [256, 128, 64]
    assert (row['batch'], row['oom_halvings']) == (64, 2)


def test_spec_flops_match_the_release_forward_counted():
    """The TFLOP/s of the GPU rows rest on the spec's GMACs: they agree with a count of the release's forward."""
    counted = gpu_check.forward_flops(dict(arch_zoo['s']), 224)  # a dict is counted, not looked up
    assert abs(counted / 2e9 - 7.32) / 7.32 < 0.01
    assert gpu_check.forward_flops('s', 224) == 2 * 7.32e9
