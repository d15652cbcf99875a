"""Runs what tests/test_readme.py checks in the docs: each Python snippet, each config snippet (loaded with mmengine,
checked as DynaMixerRunner checks a config, its model built) and each tool's ``--help``, every one in a process of
its own forked from one that imported the heavy libraries once (torch, timm, mmengine, mmcv and the toolboxes, none
of them ours: ``import mmdynamixer`` and its registrations happen in each child as in a fresh interpreter). A fresh
interpreter per task cost minutes.

    python tests/docs_runner.py < tasks.json > results.json

Each task is ``{"kind": "script" | "config" | "help", "name": ..., "code" or "script": ...}``; each result
``{"status": exit status, "output": stdout and stderr}``, in the tasks' order.
"""
import json
import os
import runpy
import sys
import tempfile
import traceback

PRELOADED = ('torch', 'timm', 'mmengine', 'mmcv', 'mmcv.ops', 'mmpretrain.models', 'mmpretrain.datasets', 'mmdet.models',
             'mmseg.models')


def build_config(path: str) -> None:
    """Load a config snippet as a user's config file, run the checks DynaMixerRunner runs before it builds anything
    (channels, strides, data and checkpoint settings), and build its model through the registries (no weights)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from mmdynamixer.engine.checks import check_config
    cfg = Config.fromfile(path)
    check_config(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    print(type(MODELS.build(cfg.model)).__name__)


def run(task: dict, workdir: str) -> None:
    if task['kind'] == 'script':
        exec(compile(task['code'], task['name'], 'exec'), {'__name__': '__main__'})
    elif task['kind'] == 'config':
        path = os.path.join(workdir, 'my_config.py')
        with open(path, 'w') as file:
            file.write(task['code'])
        build_config(path)
    elif task['kind'] == 'help':
        sys.argv = [task['script'], '--help']
        sys.path.insert(0, os.path.dirname(task['script']))  # as `python SCRIPT` puts the script's folder first
        runpy.run_path(task['script'], run_name='__main__')
    else:
        raise ValueError(f'unknown task kind {task["kind"]!r}; known: script, config, help')


def forked(task: dict, root: str) -> dict:
    """Run ``task`` in a forked child, in a folder of its own, its stdout and stderr captured."""
    workdir = tempfile.mkdtemp(dir=root)
    log = os.path.join(workdir, 'output.txt')
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            descriptor = os.open(log, os.O_WRONLY | os.O_CREAT)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            os.chdir(workdir)
            run(task, workdir)
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: B036 (the child reports whatever stopped it)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    with open(log) as file:
        return {'status': os.waitstatus_to_exitcode(wait_status), 'output': file.read()}


def main() -> None:
    tasks = json.load(sys.stdin)
    for library in PRELOADED:
        __import__(library)
    with tempfile.TemporaryDirectory() as root:
        results = [forked(task, root) for task in tasks]
    json.dump(results, sys.stdout)


if __name__ == '__main__':
    main()
