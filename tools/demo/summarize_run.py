"""What a training run left in its work_dir, told at the end of the digits demo: the best validation top-1 and
its epoch, the checkpoint to use, and the command that classifies an image with it.

    python tools/demo/summarize_run.py WORK_DIR CONFIG [--image IMAGE]

Reads mmengine's ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (every run into the work_dir, a resumed one
included, in time order) and the ``best_<metric>_epoch_<n>.pth`` that ``save_best`` keeps, else the checkpoint
``last_checkpoint`` names.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shlex
import sys
from typing import Dict, Optional

METRIC = 'accuracy/top1'


def validation_history(work_dir: str, metric: str = METRIC) -> Dict[int, float]:
    """``metric`` per validated epoch (mmengine logs validation with ``step`` = epoch); a later run's value for
    an epoch replaces an earlier one's."""
    history = {}
    for path in sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line) if line.strip() else {}
                if metric in record:
                    history[int(record['step'])] = float(record[metric])
    return history


def chosen_checkpoint(work_dir: str, metric: str = METRIC) -> Optional[str]:
    """The best checkpoint ``save_best`` kept for ``metric`` (the newest epoch if several), else the one named by
    ``last_checkpoint``, else None."""
    pattern = re.compile(rf'best_{re.escape(metric.replace("/", "_"))}_epoch_(\d+)\.pth$')
    best = [(int(m.group(1)), path) for path in glob.glob(osp.join(glob.escape(work_dir), 'best_*.pth'))
            if (m := pattern.search(osp.basename(path)))]
    if best:
        return max(best)[1]
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        return named or None
    return None


def _interpreter() -> str:
    """This interpreter, relative to the working directory when inside it (``.venv/bin/python``)."""
    relative = osp.relpath(sys.executable)
    return sys.executable if relative.startswith('..') else relative


def summary(work_dir: str, config: str, image: str, metric: str = METRIC) -> str:
    history = validation_history(work_dir, metric)
    checkpoint = chosen_checkpoint(work_dir, metric)
    if not history or checkpoint is None:
        missing = ' and '.join(what for what, absent in (('no validation result', not history),
                                                           ('no checkpoint', checkpoint is None)) if absent)
        raise ValueError(f'{work_dir} has {missing} (looked for */vis_data/scalars.json with {metric!r}, '
                         f'best_*.pth and last_checkpoint): did the training run finish an evaluation?')
    best_epoch = max(history, key=lambda epoch: (history[epoch], -epoch))  # the first epoch that reached it
    lines = [f'Best {metric}: {history[best_epoch]:.2f} % at epoch {best_epoch} '
             f'(validated at epochs {", ".join(map(str, sorted(history)))})',
             f'Checkpoint: {checkpoint}']
    saved = re.search(r'_epoch_(\d+)\.pth$', checkpoint)
    if saved and int(saved.group(1)) != best_epoch:
        lines.append(f'  (the checkpoint is from epoch {saved.group(1)}: the logs and the checkpoints in '
                     f'{work_dir} come from different runs)')
    command = [_interpreter(), 'tools/demo/image_demo.py', image, config, checkpoint, '--out-file', 'result.png']
    lines += ['Classify an image with it (prints the top 5, draws the prediction into result.png):',
              '  ' + ' '.join(map(shlex.quote, command))]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='the run\'s work_dir')
    parser.add_argument('config', help='the config it trained')
    parser.add_argument('--image', default='IMAGE', help='image for the printed command (default: a placeholder)')
    args = parser.parse_args()
    if not osp.isdir(args.work_dir):
        parser.error(f'WORK_DIR {args.work_dir!r} is not a folder')
    try:
        print(summary(os.path.normpath(args.work_dir), args.config, args.image))
    except ValueError as error:
        parser.exit(1, f'{parser.prog}: {error}\n')


if __name__ == '__main__':
    main()
