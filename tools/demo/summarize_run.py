"""What a training run left in its work_dir, told at the end of the digits and digit-scenes demos: the best
validation result and its epoch (or iteration), the checkpoint to use, the command that runs the demo tool on an
image with it, and its training curves as a PNG.

    python tools/demo/summarize_run.py WORK_DIR CONFIG [--metric KEY] [--image IMAGE] [--out-file PATH]

Reads mmengine's ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (every run into the work_dir, a resumed one
included, in time order) and the ``best_<metric>_{epoch,iter}_<n>.pth`` that ``save_best`` keeps, else the
checkpoint ``last_checkpoint`` names. Draws the training loss by iteration and the validation metric by epoch (by
iteration for iteration-based training) into ``WORK_DIR/curves.png`` (or ``--out-file PATH``). ``--metric``:
``accuracy/top1`` (default, mmpretrain; the command runs image_demo.py), mmdet's ``coco/bbox_mAP`` or
``coco/segm_mAP`` (det_demo.py), mmseg's ``mIoU`` (seg_demo.py).
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
# The demo tool that runs a checkpoint on one image, by the toolbox whose metric was validated.
DEMOS = {'accuracy/top1': 'image_demo.py', 'coco/bbox_mAP': 'det_demo.py', 'coco/segm_mAP': 'det_demo.py',
         'mIoU': 'seg_demo.py'}
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
    """``metric`` per validated epoch (iteration, for iteration-based training), merged over the runs as
    :func:`logged_series` does."""
    return logged_series(work_dir, metric)


def validation_unit(work_dir: str) -> str:
    """'iteration' when the training lines carry an iteration but no epoch (mmengine's iteration-based loop),
    else 'epoch'."""
    records = [record for run in _runs(work_dir) for record in run]
    by_iteration = any('iter' in record for record in records) and not any('epoch' in record for record in records)
    return 'iteration' if by_iteration else 'epoch'


def formatted(metric: str, value: float) -> str:
    """mmdet's COCO metrics are fractions; accuracy and mmseg's IoUs are percentages."""
    return f'{value:.3f}' if metric.startswith('coco/') else f'{value:.2f} %'


def best_epoch(history: Dict[int, float]) -> int:
    """The first epoch that reached the best value."""
    return max(history, key=lambda epoch: (history[epoch], -epoch))


def chosen_checkpoint(work_dir: str, metric: str = METRIC) -> Optional[str]:
    """The best checkpoint ``save_best`` kept for ``metric`` (the newest epoch or iteration if several), else the
    one named by ``last_checkpoint``, else None."""
    pattern = re.compile(rf'best_{re.escape(metric.replace("/", "_"))}_(?:epoch|iter)_(\d+)\.pth$')
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
    unit = validation_unit(work_dir)
    percent = not metric.startswith('coco/')
    for axes, series, step_name, value_name in ((loss_axes, logged_series(work_dir, LOSS), 'iteration',
                                                 f'training {LOSS}'),
                                                (metric_axes, history, unit,
                                                 f'validation {metric}{" (%)" if percent else ""}')):
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
                         label=f'best {formatted(metric, history[best])} at {unit} {best}')
        metric_axes.legend(loc='lower right')
        low, high = metric_axes.get_ylim()
        metric_axes.set_ylim(max(low, 0), min(high, 100 if percent else 1))
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
    unit = validation_unit(work_dir)
    lines = [f'Best {metric}: {formatted(metric, history[best])} at {unit} {best} '
             f'(validated at {unit}s {", ".join(map(str, sorted(history)))})',
             f'Checkpoint: {checkpoint}']
    saved = re.search(r'_(epoch|iter)_(\d+)\.pth$', checkpoint)
    if saved and int(saved.group(2)) != best:
        lines.append(f'  (the checkpoint is from {unit} {saved.group(2)}: the logs and the checkpoints in '
                     f'{work_dir} come from different runs)')
    demo = DEMOS.get(metric, 'image_demo.py')
    command = [_interpreter(), f'tools/demo/{demo}', image, config, checkpoint, '--out-file', 'result.png']
    what = {'image_demo.py': 'Classify an image with it (prints the top 5, draws the prediction into result.png):',
            'det_demo.py': 'Detect the objects in an image with it (prints them, draws them into result.png):',
            'seg_demo.py': 'Segment an image with it (prints the classes, draws them into result.png):'}[demo]
    lines += [what, '  ' + ' '.join(map(shlex.quote, command))]
    curves = curves or osp.join(work_dir, 'curves.png')
    write_curves(curves_figure(work_dir, config, metric), curves)
    lines.append(f'Training curves: {curves}')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', help='the run\'s work_dir')
    parser.add_argument('config', help='the config it trained')
    parser.add_argument('--metric', default=METRIC,
                        help=f'the validation metric to report, as logged (default {METRIC}; e.g. coco/bbox_mAP, '
                             'mIoU)')
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
        print(summary(os.path.normpath(args.work_dir), args.config, args.image, args.out_file, args.metric))
    except ValueError as error:
        parser.exit(1, f'{parser.prog}: {error}\n')


if __name__ == '__main__':
    main()
