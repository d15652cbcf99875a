"""tools/dist_train.sh, dist_test.sh and slurm_train.sh run the interpreter the docs promise: $PYTHON, else the
active environment's python, else the checkout's .venv, else python on PATH with a line on stderr saying so. Each
runs in a copy of tools/ beside a fake .venv and a fake python on PATH that record which one was called."""
import os
import shutil
import subprocess

import pytest

from conftest import REPO

SCRIPTS = {'dist_train.sh': ['CONFIG', '2'], 'dist_test.sh': ['CONFIG', 'CKPT', '2'],
           'slurm_train.sh': ['PARTITION', 'JOB', 'CONFIG']}


def fake_python(path, name):
    """An executable at ``path`` that prints ``name`` and exits 0 (srun, for slurm_train.sh, runs its arguments)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name}"\n')
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path):
    """A checkout with the three scripts and pick_python.sh, a fake .venv, and a PATH holding only a fake python,
    a fake srun that runs its command, and the shell's basic tools."""
    root = tmp_path / 'checkout'
    (root / 'tools').mkdir(parents=True)
    for script in (*SCRIPTS, 'pick_python.sh'):
        shutil.copy2(REPO / 'tools' / script, root / 'tools' / script)
    fake_python(root / '.venv/bin/python', 'venv-python')
    bin_dir = tmp_path / 'bin'
    fake_python(bin_dir / 'python', 'path-python')
    srun_options = 'while [[ $# -gt 0 ]]; do case "$1" in -p) shift 2;; -*) shift;; *) break;; esac; done'
    (bin_dir / 'srun').write_text(f'#!/bin/bash\n{srun_options}\nexec "$@"\n')
    (bin_dir / 'srun').chmod(0o755)
    for tool in ('dirname', 'basename', 'env'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {'PATH': str(bin_dir), 'HOME': str(tmp_path)}
    return root, env


def run(root, script, env):
    return subprocess.run(['/bin/bash', str(root / 'tools' / script), *SCRIPTS[script]], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_find_the_checkouts_venv(checkout, script):
    root, env = checkout
    result = run(root, script, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['venv-python'], result.stdout + result.stderr
    assert 'does not exist' not in result.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_prefer_python_and_an_active_environment(checkout, script):
    root, env = checkout
    chosen = root.parent / 'chosen'
    fake_python(chosen, 'chosen-python')
    assert run(root, script, dict(env, PYTHON=str(chosen))).stdout.split() == ['chosen-python']
    assert run(root, script, dict(env, VIRTUAL_ENV='/somewhere')).stdout.split() == ['path-python']
    assert run(root, script, dict(env, CONDA_PREFIX='/somewhere')).stdout.split() == ['path-python']


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_without_venv_say_which_python_they_run(checkout, script):
    root, env = checkout
    shutil.rmtree(root / '.venv')
    result = run(root, script, env)
    assert result.stdout.split() == ['path-python']
    assert f'{script}: no environment is active and {root}/.venv does not exist' in result.stderr
    assert str(root.parent / 'bin/python') in result.stderr
