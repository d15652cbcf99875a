"""What a training run left in its work_dir, told at the end of the digits demo: the best validation top-1 and
its epoch, the checkpoint to use, the command that classifies an image with it, and its training curves as a PNG.

    python tools/demo/summarize_run.py WORK_DIR CONFIG [--image IMAGE] [--out-file PATH]

Reads mmengine's ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (every run into the work_dir, a resumed one
included, in time order) and the ``best_<metric>_epoch_<n>.pth`` that ``save_best`` keeps, else the checkpoint
``last_checkpoint`` names. Draws the training loss by iteration and the validation top-1 by epoch into
``WORK_DIR/curves.png`` (or ``--out-file PATH``).
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shlex
import sys
from typing import Dict, List, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmdynamixer.cli import add_deprecated_alias

METRIC = 'accuracy/top1'
LOSS = 'loss'
CURVES_SIZE = (10, 4)  # inches, at CURVES_DPI: a 1000 x 400 PNG
CURVES_DPI = 100


def _runs(work_dir: str) -> List[List[dict]]:
    """The records of every run into ``work_dir`` (one ``<timestamp>/vis_data/scalars.json`` each), in time
    order."""
    runs = []
    for path in sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            runs.append([json.loads(line) for line in f if line.strip()])
    return runs


def logged_series(work_dir: str, key: str) -> Dict[int, float]:
    """``key``'s logged values by ``step`` (mmengine logs training with ``step`` = iteration and its ``epoch``,
    validation with ``step`` = epoch) over every run into ``work_dir``. A run starts (or resumes) at its first
    training line's epoch: the earlier runs' values from that epoch on are replaced by its own."""
    merged = {}  # step: (epoch, value)
    for records in _runs(work_dir):
        epochs = [int(record['epoch']) for record in records if 'epoch' in record]
        if epochs:
            merged = {step: logged for step, logged in merged.items() if logged[0] < min(epochs)}
        merged.update({int(record['step']): (int(record.get('epoch', record['step'])), float(record[key]))
                       for record in records if key in record})
    return {step: value for step, (_, value) in sorted(merged.items())}


def validation_history(work_dir: str, metric: str = METRIC) -> Dict[int, float]:
    """``metric`` per validated epoch, merged over the runs as :func:`logged_series` does."""
    return logged_series(work_dir, metric)


def best_epoch(history: Dict[int, float]) -> int:
    """The first epoch that reached the best value."""
    return max(history, key=lambda epoch: (history[epoch], -epoch))


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


def curves_figure(work_dir: str, config: str, metric: str = METRIC) -> Figure:
    """Two panels side by side: the training loss by iteration and the validation ``metric`` by epoch (its best
    marked), titled with the config's name."""
    figure = Figure(figsize=CURVES_SIZE, dpi=CURVES_DPI, layout='constrained')
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    history = validation_history(work_dir, metric)
    for axes, series, step_name, value_name in ((loss_axes, logged_series(work_dir, LOSS), 'iteration',
                                                 f'training {LOSS}'),
                                                (metric_axes, history, 'epoch', f'validation {metric} (%)')):
        if series:
            axes.plot(list(series), list(series.values()), marker='o' if len(series) < 30 else None,
                      markersize=3, linewidth=1)
        else:
            axes.text(0.5, 0.5, f'no {value_name} logged', ha='center', va='center', transform=axes.transAxes)
        axes.set_xlabel(step_name)
        axes.set_ylabel(value_name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    if history:
        best = best_epoch(history)
        metric_axes.plot([best], [history[best]], linestyle='none', marker='*', markersize=12,
                         label=f'best {history[best]:.2f} % at epoch {best}')
        metric_axes.legend(loc='lower right')
        low, high = metric_axes.get_ylim()
        metric_axes.set_ylim(max(low, 0), min(high, 100))  # a percentage
    figure.suptitle(f'{osp.splitext(osp.basename(config))[0]}: training curves')
    return figure


def check_curves_path(path: str) -> None:
    """ValueError unless ``path`` can name the curves' PNG: ends in .png, is not a folder."""
    if not path.lower().endswith('.png'):
        raise ValueError(f'--out-file {path!r} must name a .png file')
    if osp.isdir(path):
        raise ValueError(f'--out-file {path!r} is a folder; give the path of a .png file')


def write_curves(figure: Figure, path: str) -> None:
    """Saves ``figure`` as the PNG ``path``, creating its folder."""
    check_curves_path(path)
    try:
        os.makedirs(osp.dirname(path) or '.', exist_ok=True)
        figure.savefig(path, format='png')
    except OSError as error:
        raise ValueError(f'cannot write --out-file {path!r}: {error}') from error


def _interpreter() -> str:
    """This interpreter, relative to the working directory when inside it (``.venv/bin/python``)."""
    relative = osp.relpath(sys.executable)
    return sys.executable if relative.startswith('..') else relative


def summary(work_dir: str, config: str, image: str, curves: Optional[str] = None, metric: str = METRIC) -> str:
    """The summary's lines; writes the training curves to ``curves`` (default ``WORK_DIR/curves.png``)."""
    history = validation_history(work_dir, metric)
    checkpoint = chosen_checkpoint(work_dir, metric)
    if not history or checkpoint is None:
        missing = ' and '.join(what for what, absent in (('no validation result', not history),
                                                           ('no checkpoint', checkpoint is None)) if absent)
        raise ValueError(f'{work_dir} has {missing} (looked for */vis_data/scalars.json with {metric!r}, '
                         f'best_*.pth and last_checkpoint): did the training run finish an evaluation?')
    best = best_epoch(history)
    lines = [f'Best {metric}: {history[best]:.2f} % at epoch {best} '
             f'(validated at epochs {", ".join(map(str, sorted(history)))})',
             f'Checkpoint: {checkpoint}']
    saved = re.search(r'_epoch_(\d+)\.pth$', checkpoint)
    if saved and int(saved.group(1)) != best:
        lines.append(f'  (the checkpoint is from epoch {saved.group(1)}: the logs and the checkpoints in '
                     f'{work_dir} come from different runs)')
    command = [_interpreter(), 'tools/demo/image_demo.py', image, config, checkpoint, '--out-file', 'result.png']
    lines += ['Classify an image with it (prints the top 5, draws the prediction into result.png):',
              '  ' + ' '.join(map(shlex.quote, command))]
    curves = curves or osp.join(work_dir, 'curves.png')
    write_curves(curves_figure(work_dir, config, metric), curves)
    lines.append(f'Training curves: {curves}')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', help='the run\'s work_dir')
    parser.add_argument('config', help='the config it trained')
    parser.add_argument('--image', default='IMAGE', help='image for the printed command (default: a placeholder)')
    parser.add_argument('--out-file', help='PNG to draw the training curves into (default: WORK_DIR/curves.png)')
    add_deprecated_alias(parser, '--curves', '--out-file', 'out_file')
    args = parser.parse_args()
    if not osp.isdir(args.work_dir):
        parser.error(f'WORK_DIR {args.work_dir!r} is not a folder')
    if args.out_file:
        try:
            check_curves_path(args.out_file)
        except ValueError as error:
            parser.error(str(error))
    try:
        print(summary(os.path.normpath(args.work_dir), args.config, args.image, args.out_file))
    except ValueError as error:
        parser.exit(1, f'{parser.prog}: {error}\n')


if __name__ == '__main__':
    main()
