"""Forward time and peak memory of the DynaMixer backbone for dense-prediction input sizes.

    python tools/analysis/benchmark_dense.py --arch s                    # 512x512, 800x1333 and a sweep
    python tools/analysis/benchmark_dense.py --arch l --sizes 512x512 800x1333 --device cuda --batch 2

Prints a markdown table per arch: milliseconds per forward (fastest and median of --repeat after --warmup),
peak memory of the forward, and both per megapixel. With each DynaMixer operation running over
windows of its L tokens, the cost per pixel is constant up to the padding of each axis to a multiple of L (the
"window padding" column: token-mixing work with padded windows over that without, at the first and
the last stage), so ms / MP stays flat as the image grows; the least-squares line of time against
megapixels is printed below the table. --out-file also writes the rows as JSON.

Time and memory are measured by :mod:`mmdynamixer.benchmarking`: on CUDA ``torch.cuda.max_memory_allocated``
during a forward minus what was allocated before it; on CPU each size's forward is built and run again in a fresh
process, and its peak resident set after the warm-up is compared with the resident set after building the model and
the input. Only the backbone runs (no neck or head), in inference mode, as the dense configs build it
(``final_norm=False``, ``out_indices`` the last stage of each stride: S and L (0, 3), M (1, 3)).

On a CPU that other processes are using, pass ``--threads`` below the number of idle cores (e.g.
``--threads 1``): torch's OpenMP threads wait at every op for a descheduled sibling, which made
2-thread forwards up to 10x slower (and erratic) on a busy 2-core machine.
"""
import argparse
import functools
import json
import math
from pathlib import Path

import torch

from mmdynamixer import benchmarking
from mmdynamixer.cli import add_arch_argument, add_device_argument, add_sizes_argument, arch_label
from mmdynamixer.models import DynaMixerNet, resolve_arch
from mmdynamixer.models.dynamixer import stage_strides

DEFAULT_SIZES = ['224x224', '448x448', '512x512', '672x672', '800x1333', '896x896', '1120x1120']
# What the fresh processes of the CPU memory measurements start with.
PRELOAD = ['mmdynamixer.models']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_argument(parser)
    add_sizes_argument(parser, DEFAULT_SIZES)
    parser.add_argument('--batch', type=int, default=1)
    add_device_argument(parser)
    parser.add_argument('--warmup', type=int, default=1, help='untimed forwards per size')
    parser.add_argument('--repeat', type=int, default=3, help='timed forwards per size (fastest and median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--out-file', help='also write the rows here (JSON)')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error(f'--batch {args.batch} and --repeat {args.repeat} must be at least 1, --warmup {args.warmup} '
                     f'at least 0')
    return args


def dense_out_indices(arch) -> tuple:
    """The last stage of each stride, as the dense configs take them."""
    strides = stage_strides(resolve_arch(arch))
    return tuple(i for i, stride in enumerate(strides) if i == len(strides) - 1 or strides[i + 1] != stride)


def build(arch, device) -> DynaMixerNet:
    model = DynaMixerNet(arch, num_classes=0, out_indices=dense_out_indices(arch), final_norm=False)
    return model.eval().to(device)


def forward_step(model: DynaMixerNet, batch: int, size, device):
    """One inference forward of the backbone on a random batch of ``size`` (height, width)."""
    x = torch.randn(batch, 3, *size, device=device)

    def step():
        with torch.inference_mode():
            model.forward_features(x)
    return step


def new_forward_step(arch, batch, size):
    """:func:`forward_step` of a model built from scratch on CPU, for a fresh process."""
    return forward_step(build(arch, 'cpu'), batch, size, torch.device('cpu'))


def measure(model, arch, size, args) -> dict:
    """Fastest and median forward time (ms) and peak forward memory (MiB) for one input size."""
    device = torch.device(args.device)
    step = forward_step(model, args.batch, size, device)
    timing = benchmarking.alternate({'forward': step}, device, args.warmup, args.repeat)['forward']
    if device.type == 'cuda':
        peak_mib = benchmarking.cuda_peak_mib(step, device, warmup=0)
    else:
        peak_mib = benchmarking.fresh_process_peak_mib(functools.partial(new_forward_step, arch, args.batch, size),
                                                       args.warmup, args.threads, PRELOAD)
    return dict(height=size[0], width=size[1], ms_min=timing.fastest * 1e3, ms_median=timing.median * 1e3,
                ms=[t * 1e3 for t in timing.seconds], peak_mib=peak_mib)


def window_padding(arch: dict, height: int, width: int) -> str:
    """Token-mixing work with padded windows over that without, at stride 7 and at stride 14.

    A row (column) mixing pads its axis to a multiple of the stage's L; averaged over both directions.
    """
    values = []
    strides = stage_strides(arch)
    for stage in (0, len(arch['layers']) - 1):
        stride = strides[stage]
        seq_len = arch['resolutions'][stage]
        h, w = math.ceil(height / stride), math.ceil(width / stride)
        hp, wp = math.ceil(h / seq_len) * seq_len, math.ceil(w / seq_len) * seq_len
        values.append((hp * w + h * wp) / (2 * h * w))
    return ' / '.join(f'{v:.2f}' for v in values)


def fit_line(xs, ys):
    """Least squares y = a x + b and R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        return float('nan'), float('nan'), float('nan')
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    b = my - a * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a * x - b) ** 2 for x, y in zip(xs, ys))
    return a, b, 1 - ss_res / ss_tot if ss_tot else float('nan')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':
        device_name = torch.cuda.get_device_name(device)
        memory = 'peak CUDA memory allocated by the forward'
    else:
        device_name = f'CPU, {torch.get_num_threads()} threads'
        memory = 'peak RSS of the forward (fresh process) over the RSS after building the model and the input'
    report = []
    for arch in args.arch:
        model = build(arch, device)
        rows = [measure(model, arch, size, args) for size in args.sizes]
        del model
        out_indices = dense_out_indices(arch)
        print(f'DynaMixer-{arch_label(arch)} backbone (out_indices {out_indices}, strides '
              f'{sorted(set(stage_strides(resolve_arch(arch))))}), batch {args.batch}, {device_name}, torch '
              f'{torch.__version__}; fastest and median of {args.repeat} forwards after {args.warmup} warm-up '
              f'(ms / MP from the fastest: the least disturbed by other load); memory: {memory}.\n')
        print('| input (H x W) | megapixels | stride-7 / stride-14 maps | window padding | ms (min) | ms (median) '
              '| ms / MP (min) | peak MiB | MiB / MP |')
        print('|---|---:|---|---:|---:|---:|---:|---:|---:|')
        megapixels = []
        for row in rows:
            h, w = row['height'], row['width']
            mp = args.batch * h * w / 1e6
            megapixels.append(mp)
            maps = f'{math.ceil(h / 7)}x{math.ceil(w / 7)} / {math.ceil(h / 14)}x{math.ceil(w / 14)}'
            print(f'| {h} x {w} | {mp:.3f} | {maps} | {window_padding(resolve_arch(arch), h, w)} '
                  f'| {row["ms_min"]:.1f} | {row["ms_median"]:.1f} | {row["ms_min"] / mp:.1f} | {row["peak_mib"]:.0f} '
                  f'| {row["peak_mib"] / mp:.0f} |')
        slope, intercept, r2 = fit_line(megapixels, [row['ms_min'] for row in rows])
        print(f'\nLeast squares of the fastest times over the sizes: ms = {slope:.1f} x MP {intercept:+.1f}, '
              f'R^2 = {r2:.4f}\n')
        report.append(dict(arch=arch, out_indices=out_indices, batch=args.batch, device=device_name, rows=rows,
                           fit=dict(ms_per_mp=slope, ms_at_0=intercept, r2=r2)))
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
