"""Running the project's and the toolboxes' command-line tools from tests and benchmarks."""
import importlib
import os
import sys
from pathlib import Path


def tool_env(**extra: str) -> dict:
    """Environment for tool subprocesses: this interpreter's folder first on PATH (the toolboxes' shell scripts
    call ``python``), PYTHON for ours, one thread per process, plus ``extra``."""
    env = dict(os.environ)
    env['PYTHON'] = sys.executable
    env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env.get("PATH", "")}'
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra)
    return env


def upstream_tool(toolbox: str, script: str) -> Path:
    """A toolbox's own script as its wheel ships it under ``<package>/.mim/tools`` (what users and ``mim`` run),
    e.g. ``upstream_tool('mmpretrain', 'dist_train.sh')``."""
    path = Path(importlib.import_module(toolbox).__file__).parent / '.mim' / 'tools' / script
    if not path.is_file():
        raise FileNotFoundError(f'{toolbox} ships no {script} at {path}')
    return path
