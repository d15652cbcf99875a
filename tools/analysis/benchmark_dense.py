"""Forward time and peak memory of the DynaMixer backbone for dense-prediction input sizes.

    python tools/analysis/benchmark_dense.py --arch s                    # 512x512, 800x1333 and a sweep
    python tools/analysis/benchmark_dense.py --arch l --sizes 512x512 800x1333 --device cuda --batch 2

Prints a markdown table: milliseconds per forward (fastest and median of --repeat after --warmup),
peak memory of the forward, and both per megapixel. With each DynaMixer operation running over
windows of its L tokens, the cost per pixel is constant up to the padding of each axis to a multiple of L (the
"window padding" column: token-mixing work with padded windows over that without, at the first and
the last stage), so ms / MP stays flat as the image grows; the least-squares line of time against
megapixels is printed below the table.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the forward minus what was allocated
before it. On CPU, tracemalloc does not see torch's allocator, so each size runs in a fresh process
and the peak resident set (``ru_maxrss``) is compared with the resident set after the model was built.
Only the backbone runs (no neck or head), in inference mode, as the dense configs build it
(``final_norm=False``, ``out_indices`` of the stride-7 and stride-14 outputs).

On a CPU that other processes are using, pass ``--threads`` below the number of idle cores (e.g.
``--threads 1``): torch's OpenMP threads wait at every op for a descheduled sibling, which made
2-thread forwards up to 10x slower (and erratic) on a busy 2-core machine.
"""
import argparse
import gc
import json
import math
import os
import os.path as osp
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
from mmdynamixer.models.dynamixer import DynaMixerNet, resolve_arch, stage_strides  # noqa: E402

DEFAULT_SIZES = ['224x224', '448x448', '512x512', '672x672', '800x1333', '896x896', '1120x1120']
DENSE_OUT_INDICES = {'s': (0, 3), 'm': (1, 3), 'l': (0, 3)}


def parse_size(text: str):
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size {text!r} is not HxW, e.g. 800x1333') from None
    return height, width


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the DynaMixer backbone at dense-prediction sizes')
    parser.add_argument('--arch', default='s', choices=['s', 'm', 'l'])
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES],
                        help='input sizes as HxW (default: %(default)s)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=1, help='untimed forwards per size')
    parser.add_argument('--repeat', type=int, default=3, help='timed forwards per size (fastest and median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--child', type=parse_size, help=argparse.SUPPRESS)  # one CPU measurement
    return parser.parse_args(argv)


def build(arch: str, device: str) -> DynaMixerNet:
    model = DynaMixerNet(arch, num_classes=0, out_indices=DENSE_OUT_INDICES[arch], final_norm=False)
    return model.eval().to(device)


def rss_kib() -> int:
    """Current resident set of this process (KiB)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def measure(model: DynaMixerNet, size, args) -> dict:
    """Fastest and median forward time (ms) and peak forward memory (MiB) for one input size."""
    height, width = size
    device = torch.device(args.device)
    x = torch.randn(args.batch, 3, height, width, device=device)
    cuda = device.type == 'cuda'
    times = []
    with torch.inference_mode():
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            base = rss_kib()
        for i in range(args.warmup + args.repeat):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            outs = model.forward_features(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)
            del outs
        if cuda:
            peak_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    times.sort()
    return dict(height=height, width=width, ms_min=times[0], ms_median=times[len(times) // 2], peak_mib=peak_mib)


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


def run_child(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args.arch, args.device)
    print(json.dumps(measure(model, args.child, args)))


def run_cpu_in_subprocess(size, args) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--arch', args.arch, '--batch', str(args.batch), '--device',
           args.device, '--warmup', str(args.warmup), '--repeat', str(args.repeat), '--child', f'{size[0]}x{size[1]}']
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f'benchmark of {size[0]}x{size[1]} failed:\n{run.stderr[-3000:]}')
    return json.loads(run.stdout.strip().splitlines()[-1])


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
    if args.child is not None:
        run_child(args)
        return
    cuda = torch.device(args.device).type == 'cuda'
    arch = resolve_arch(args.arch)
    if cuda:
        if args.threads:
            torch.set_num_threads(args.threads)
        model = build(args.arch, args.device)
        rows = [measure(model, size, args) for size in args.sizes]
        device = torch.cuda.get_device_name(torch.device(args.device))
        memory = 'peak CUDA memory allocated by the forward'
    else:
        rows = [run_cpu_in_subprocess(size, args) for size in args.sizes]
        device = f'CPU, {args.threads or torch.get_num_threads()} threads'
        memory = 'peak RSS of the forward over the process after building the model'
    print(f'DynaMixer-{args.arch.upper()} backbone (out_indices {DENSE_OUT_INDICES[args.arch]}, strides 7 and 14), '
          f'batch {args.batch}, {device}, torch {torch.__version__}; fastest and median of {args.repeat} forwards '
          f'after {args.warmup} warm-up (ms / MP from the fastest: the least disturbed by other load); '
          f'memory: {memory}.\n')
    print('| input (H x W) | megapixels | stride-7 / stride-14 maps | window padding | ms (min) | ms (median) '
          '| ms / MP (min) | peak MiB | MiB / MP |')
    print('|---|---:|---|---:|---:|---:|---:|---:|---:|')
    megapixels = []
    for row in rows:
        h, w = row['height'], row['width']
        mp = args.batch * h * w / 1e6
        megapixels.append(mp)
        maps = (f'{math.ceil(h / 7)}x{math.ceil(w / 7)} / {math.ceil(h / 14)}x{math.ceil(w / 14)}')
        print(f'| {h} x {w} | {mp:.3f} | {maps} | {window_padding(arch, h, w)} | {row["ms_min"]:.1f} '
              f'| {row["ms_median"]:.1f} | {row["ms_min"] / mp:.1f} | {row["peak_mib"]:.0f} '
              f'| {row["peak_mib"] / mp:.0f} |')
    slope, intercept, r2 = fit_line(megapixels, [row['ms_min'] for row in rows])
    print(f'\nLeast squares of the fastest times over the sizes: ms = {slope:.1f} x MP {intercept:+.1f}, '
          f'R^2 = {r2:.4f}')


if __name__ == '__main__':
    main()
