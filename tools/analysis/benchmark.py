"""Images/s and peak memory of DynaMixer against a straightforward re-implementation of the release.

    python tools/analysis/benchmark.py --arch s --batch 8 [--mode infer train] [--precision fp32 bf16 fp16]
                                       [--compile] [--device cpu|cuda] [--threads 2] [--repeat 7]
                                       [--out-file out.json] [--onnxruntime dynamic static]

Both models hold the same weights. Time and memory are measured by :mod:`mmdynamixer.benchmarking`: --warmup
untimed steps of each, then --repeat rounds of one timed step of each model in turn (synchronised on CUDA), and
medians, so that drifts in machine load hit both alike. A training step is forward, cross-entropy, backward and an
AdamW step; bf16 and fp16 run the step under autocast. The release's forward runs only at its arch's size
(7 x resolutions[0] a side: 224 for S, M and L), so --size must be that.
GFLOP/s counts 2 FLOPs per multiply-add of :func:`mmdynamixer.analysis.complexity` (what get_flops.py prints) per
image, 3 x that for a training step (the backward costs about twice the forward).

--onnxruntime adds our model exported to ONNX by :func:`mmdynamixer.export.export_onnx` (as
tools/deployment/pytorch2onnx.py does, checked against eager before it is timed) and run by onnxruntime's CPU
provider with --threads intra-op threads, for fp32 CPU inference: 'dynamic' is the graph with dynamic batch,
height and width (one file for every size), 'static' the graph traced for exactly this batch and size. It joins
the alternation of timed steps.

Peak memory: what a step holds at its peak beyond the weights and the input batch (activations, gradients,
AdamW's moments created by the first step, temporaries), measured on a step after the warm-up, relative to the
memory in use before the first one. On CUDA torch.cuda.max_memory_allocated, ours and the reference in turn in
this process; on CPU the peak resident set of a fresh process per (arch, mode, precision, implementation), which
includes malloc's retained free memory and, with --compile, the compiled code and its caches. Linux only.

Prints a markdown table (and JSON with --out-file: the rows with every step time, plus the environment and
the load average before and after). On a CPU that others use, pass --threads below the number of idle
cores: torch's threads wait at every op for a descheduled sibling.
"""
import argparse
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from mmdynamixer import benchmarking
from mmdynamixer.analysis import complexity
from mmdynamixer.cli import (add_arch_argument, add_deprecated_alias, add_device_argument, add_precision_argument,
                             add_size_argument, arch_label, require_release_size)
from mmdynamixer.export import export_onnx, onnxruntime_session
from mmdynamixer.models import DynaMixerNet, resolve_arch
from mmdynamixer.release_reference import RefDynaMixer

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
IMPLEMENTATIONS = ('ours', 'release')
ONNX_GRAPHS = ('dynamic', 'static')
# What the fresh processes of the CPU memory measurements start with.
PRELOAD = ['mmdynamixer.models', 'mmdynamixer.release_reference']


def build(implementation, arch, device):
    if implementation == 'ours':
        return DynaMixerNet(arch).to(device)
    return RefDynaMixer(resolve_arch(arch)).to(device)


def make_step(model, mode, precision, device, batch, size):
    images = torch.randn(batch, 3, *size, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    dtype = DTYPES[precision]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if mode == 'train' else None

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if mode == 'infer':
                with torch.no_grad():
                    model(images)
                return
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def make_onnx_step(path, threads, batch, size):
    session = onnxruntime_session(path, threads)
    feed = {'images': torch.randn(batch, 3, *size).numpy()}
    return lambda: session.run(None, feed)


def prepare(model, mode, compile_model):
    model.train(mode == 'train')
    return torch.compile(model) if compile_model else model


def new_step(implementation, arch, mode, precision, batch, size, compile_model, threads, onnx_path=None):
    """One implementation's step built from scratch on CPU (or ``onnx_path`` in onnxruntime), for a fresh process."""
    if onnx_path:
        return make_onnx_step(onnx_path, threads, batch, size)
    device = torch.device('cpu')
    model = prepare(build(implementation, arch, device), mode, compile_model)
    return make_step(model, mode, precision, device, batch, size)


def environment(args, device):
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads'
    return dict(device=name, torch=torch.__version__, date=datetime.datetime.now().isoformat(timespec='seconds'),
                command=' '.join(sys.argv), loadavg_before=os.getloadavg())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_argument(parser)
    parser.add_argument('--batch', type=int, default=8)
    add_size_argument(parser, help="input size, the release's (7 x resolutions[0] a side)")
    parser.add_argument('--mode', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    add_precision_argument(parser, sorted(DTYPES))
    parser.add_argument('--compile', action='store_true', help='torch.compile both models')
    add_device_argument(parser)
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first (at least 1)')
    parser.add_argument('--repeat', type=int, default=7, help='timed steps of each model (medians reported)')
    parser.add_argument('--out-file', help='also write the results here (JSON)')
    add_deprecated_alias(parser, '--json', '--out-file', 'out_file')
    parser.add_argument('--onnxruntime', nargs='+', default=[], choices=ONNX_GRAPHS,
                        help='also time our model in onnxruntime (CPU, fp32 inference): dynamic and/or static graph')
    args = parser.parse_args(argv)
    if args.onnxruntime and args.device != 'cpu':
        parser.error(f'--onnxruntime runs on the CPU provider: it needs --device cpu, got {args.device}')
    if args.warmup < 1:
        parser.error(f'--warmup {args.warmup}: at least 1 is needed (the first step creates the optimizer state)')
    if args.batch < 1 or args.repeat < 1:
        parser.error(f'--batch {args.batch} and --repeat {args.repeat} must be at least 1')
    require_release_size(parser, args.arch, args.size)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(args, device)
    height, width = args.size

    rows = []
    onnx_dir = tempfile.TemporaryDirectory(prefix='benchmark_onnx_')
    for arch_index, arch in enumerate(args.arch):
        macs = complexity(arch, args.size)['flops']
        models = {name: build(name, arch, device) for name in IMPLEMENTATIONS}
        models['release'].load_state_dict(models['ours'].state_dict())
        onnx_paths = {}
        for graph in args.onnxruntime:
            onnx_paths[f'ort_{graph}'] = str(Path(onnx_dir.name) / f'{arch_index}_{graph}.onnx')
            export_onnx(models['ours'], onnx_paths[f'ort_{graph}'], args.size, args.batch, graph == 'dynamic',
                        ['logits'])
        for mode in args.mode:
            for precision in args.precision:
                prepared = {name: prepare(model, mode, args.compile) for name, model in models.items()}
                steps = {name: make_step(model, mode, precision, device, args.batch, args.size)
                         for name, model in prepared.items()}
                onnx_rows = onnx_paths if (mode, precision) == ('infer', 'fp32') else {}
                steps.update({name: make_onnx_step(path, args.threads, args.batch, args.size)
                              for name, path in onnx_rows.items()})
                if device.type == 'cuda':
                    memory = {name: benchmarking.cuda_peak_mib(step, device, args.warmup)
                              for name, step in steps.items()}
                else:
                    memory = {name: benchmarking.fresh_process_peak_mib(
                        functools.partial(new_step, name, arch, mode, precision, args.batch, args.size, args.compile,
                                          args.threads, onnx_rows.get(name)), args.warmup, args.threads, PRELOAD)
                        for name in steps}
                times = benchmarking.alternate(steps, device, args.warmup, args.repeat)
                row = dict(arch=arch, mode=mode, precision=precision, compile=args.compile, batch=args.batch,
                           height=height, width=width, macs_per_image=macs)
                for name, timing in times.items():
                    row[f'{name}_img_s'] = args.batch / timing.median
                    row[f'{name}_peak_mib'] = memory[name]
                    row[f'{name}_step_s'] = timing.seconds
                row['speedup'] = row['ours_img_s'] / row['release_img_s']
                row['ours_gflop_s'] = row['ours_img_s'] * 2 * macs * (3 if mode == 'train' else 1) / 1e9
                rows.append(row)
    onnx_dir.cleanup()
    env['loadavg_after'] = os.getloadavg()

    print(f"{env['device']}, torch {env['torch']}, {height} x {width}; medians of {args.repeat} steps "
          f"after {args.warmup} warm-up; load average {env['loadavg_before'][0]:.2f} before, "
          f"{env['loadavg_after'][0]:.2f} after\n")
    onnx_names = [f'ort_{graph}' for graph in args.onnxruntime]
    onnx_header = ''.join(f' {name} img/s | {name} peak MiB |' for name in onnx_names)
    print('| arch | mode | precision | compile | batch | ours img/s | release img/s | ours / release '
          '| ours GFLOP/s | ours peak MiB | release peak MiB |' + onnx_header)
    print('|---|---|---|---|---|---:|---:|---:|---:|---:|---:|' + '---:|---:|' * len(onnx_names))
    for r in rows:
        onnx_cells = ''.join(f" {r[f'{name}_img_s']:.2f} | {r[f'{name}_peak_mib']:.0f} |" if f'{name}_img_s' in r
                             else ' - | - |' for name in onnx_names)
        print(f"| {arch_label(r['arch'])} | {r['mode']} | {r['precision']} | {r['compile']} | {r['batch']} "
              f"| {r['ours_img_s']:.2f} | {r['release_img_s']:.2f} | {r['speedup']:.2f} | {r['ours_gflop_s']:.0f} "
              f"| {r['ours_peak_mib']:.0f} | {r['release_peak_mib']:.0f} |" + onnx_cells)
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(dict(environment=env, results=rows), indent=2))


if __name__ == '__main__':
    main()
