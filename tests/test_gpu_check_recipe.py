"""tools/analysis/gpu_check.py's recipe and engine modes, run on the CPU with --quick: the code a lent GPU runs."""
import json
import subprocess
import sys

from mmdynamixer.testing import tool_env


def test_recipe_step_rows_train_and_agree_with_the_release(repo, tmp_path):
    """The recipe's step (built from the S config) runs for ours and the release: training rows only, in bf16 (the
    quick precisions less fp32, which the recipe does not train in), logits within tolerance of the release's."""
    run = subprocess.run([sys.executable, 'tools/analysis/gpu_check.py', '--quick', '--device', 'cpu', '--step',
                          'recipe', '--out-dir', str(tmp_path)], cwd=repo, env=tool_env(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['env']['step'] == 'recipe'
    assert [(row['impl'], row['mode'], row['precision'], row['status']) for row in report['rows']] == [
        ('ours', 'train', 'bf16', 'done'), ('release', 'train', 'bf16', 'done')]
    assert all(row['ok'] for row in report['rows']), report['rows']
    assert 'paramwise_options -- head.bias:weight_decay=0.0' in run.stdout + run.stderr  # the recipe's decay groups


def test_engine_mode_times_tools_train_on_in_memory_samples(repo, tmp_path):
    """``--step engine`` trains the bf16 config through tools/train.py for exactly the iterations asked (the
    in-memory dataset holds that many batches) and sizes the loader workers from benchmark_pipeline.py."""
    run = subprocess.run([sys.executable, 'tools/analysis/gpu_check.py', '--quick', '--device', 'cpu', '--step',
                          'engine', '--engine-iters', '4', '--pipeline-images', '192', '--out-dir', str(tmp_path)],
                         cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check_engine.json').read_text())
    assert (report['config'], report['batch'], report['iterations']) == ('dynamixer-s_8xb256-bf16_in1k.py', 2, 4)
    assert report['images_per_s'] > 0 and report['workers_per_gpu'] >= 1
    assert 'Epoch(train) [1][4/4]' in run.stdout + run.stderr
