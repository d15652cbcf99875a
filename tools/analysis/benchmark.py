"""Images/s and peak memory of DynaMixer against a straightforward re-implementation of the release.

    python tools/analysis/benchmark.py --arch s --batch 8 [--mode infer train] [--precision fp32 bf16 fp16]
                                       [--compile] [--device cpu|cuda] [--threads 2] [--repeat 7] [--json out.json]
                                       [--onnxruntime dynamic static]

Speed: both models hold the same weights; each measurement alternates ours and the reference, one
timed step each, and reports medians, so drifts in machine load hit both alike. A training step is
forward, cross-entropy, backward and an AdamW step. bf16 and fp16 run the step under autocast.
GFLOP/s counts 2 x the multiply-adds of mmengine's FlopAnalyzer per image (tools/analysis/get_flops.py),
3 x that for a training step (the backward costs about twice the forward).

--onnxruntime adds our model exported to ONNX (torch's dynamo exporter, as tools/deployment/pytorch2onnx.py
does) and run by onnxruntime's CPU provider with --threads intra-op threads, for fp32 CPU inference: 'dynamic'
is the graph with dynamic batch, height and width (one file for every size), 'static' the graph traced for
exactly this batch and size. It joins the alternation of timed steps.

Peak memory: what a step holds at its peak beyond the weights and the input batch (activations,
gradients, AdamW's moments created by the first step, temporaries), measured on a step after --warmup
steps and relative to the memory in use before the first one.
- CUDA: torch.cuda.max_memory_allocated (reset before the measured step) minus memory_allocated
  before the first step; ours and the reference in turn, in this process.
- CPU: tensors come from malloc, which torch does not count, so each (arch, mode, precision,
  implementation) runs in a fresh process (forked from a server that has only imported the modules)
  and reports the kernel's peak resident set (VmHWM, reset to the current resident set after the
  warm-up through /proc/self/clear_refs) minus the resident set after building the model and batch.
  This is what the process really occupies, so it includes malloc's retained free memory and, with
  --compile, the compiled code and its caches. Linux only.

Prints a markdown table (and JSON with --json: the rows with every step time, plus the environment and
the load average before and after). On a CPU that others use, pass --threads below the number of idle
cores: torch's threads wait at every op for a descheduled sibling.
"""
import argparse
import concurrent.futures
import datetime
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmdynamixer.analysis import arch_label, complexity, parse_arch
from mmdynamixer.models import DynaMixerNet, resolve_arch
from mmdynamixer.testing.release_reference import RefDynaMixer

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
IMPLEMENTATIONS = ('ours', 'release')
ONNX_GRAPHS = ('dynamic', 'static')


def build(implementation, arch, device):
    if implementation == 'ours':
        return DynaMixerNet(arch).to(device)
    return RefDynaMixer(resolve_arch(arch)).to(device)


def make_step(model, mode, precision, device, batch, size):
    images = torch.randn(batch, 3, size, size, device=device)
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


def export_onnx(model, graph, batch, size, path):
    """Write ``model`` (images -> logits) as ONNX, with dynamic batch, height and width if ``graph`` is 'dynamic'."""
    dims = {0: torch.export.Dim('batch'), 2: torch.export.Dim('height'), 3: torch.export.Dim('width')}
    torch.onnx.export(model.eval(), (torch.randn(batch, 3, size, size),), path, dynamo=True, verbose=False,
                      input_names=['images'], dynamic_shapes=(dims,) if graph == 'dynamic' else None)


def make_onnx_step(path, threads, batch, size):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {'images': torch.randn(batch, 3, size, size).numpy()}
    return lambda: session.run(None, feed)


def prepare(model, mode, compile_model):
    model.train(mode == 'train')
    return torch.compile(model) if compile_model else model


def timed(step, device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def proc_status_kib(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def peak_memory_mib(step, device, warmup):
    """Peak memory of the step after ``warmup`` steps, over the memory in use before the first (MiB)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        for _ in range(warmup):
            step()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    gc.collect()
    base = proc_status_kib('VmRSS')
    for _ in range(warmup):
        step()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := current VmRSS, so the warm-up's (and compilation's) peaks do not count
    step()
    return (proc_status_kib('VmHWM') - base) / 1024


def cpu_peak_memory_mib(implementation, arch, mode, precision, args, onnx_path=None):
    """Run in a fresh process: build one model (or load ``onnx_path`` in onnxruntime) and measure its step's peak
    resident memory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device('cpu')
    if onnx_path:
        step = make_onnx_step(onnx_path, args.threads, args.batch, args.size)
    else:
        model = prepare(build(implementation, arch, device), mode, args.compile)
        step = make_step(model, mode, precision, device, args.batch, args.size)
    return peak_memory_mib(step, device, args.warmup)


def environment(args, device):
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads'
    return dict(device=name, torch=torch.__version__, date=datetime.datetime.now().isoformat(timespec='seconds'),
                command=' '.join(sys.argv), loadavg_before=os.getloadavg())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=['s'], help='s, m, l or a JSON arch dict')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--mode', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    parser.add_argument('--precision', nargs='+', default=['fp32'], choices=sorted(DTYPES))
    parser.add_argument('--compile', action='store_true', help='torch.compile both models')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first (at least 1)')
    parser.add_argument('--repeat', type=int, default=7, help='timed steps of each model (medians reported)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--onnxruntime', nargs='+', default=[], choices=ONNX_GRAPHS,
                        help='also time our model in onnxruntime (CPU, fp32 inference): dynamic and/or static graph')
    args = parser.parse_args(argv)
    if args.onnxruntime and args.device != 'cpu':
        parser.error(f'--onnxruntime runs on the CPU provider: it needs --device cpu, got {args.device}')
    if args.warmup < 1:
        parser.error(f'--warmup {args.warmup}: at least 1 is needed (the first step creates the optimizer state)')
    try:
        args.archs = [parse_arch(text) for text in args.arch]
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(args, device)
    if device.type == 'cpu':
        # Fresh processes for the memory measurements, forked from a server that has imported the models
        # (by name: Python 3.11's forkserver ignores a '__main__' preload).
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload(['mmdynamixer.analysis', 'mmdynamixer.testing.release_reference'])

    rows = []
    onnx_dir = tempfile.TemporaryDirectory(prefix='benchmark_onnx_')
    for arch_index, arch in enumerate(args.archs):
        flops = complexity(arch, args.size)['flops']
        models = {name: build(name, arch, device) for name in IMPLEMENTATIONS}
        models['release'].load_state_dict(models['ours'].state_dict())
        onnx_paths = {}
        for graph in args.onnxruntime:
            onnx_paths[f'ort_{graph}'] = str(Path(onnx_dir.name) / f'{arch_index}_{graph}.onnx')
            export_onnx(models['ours'], graph, args.batch, args.size, onnx_paths[f'ort_{graph}'])
        for mode in args.mode:
            for precision in args.precision:
                prepared = {name: prepare(model, mode, args.compile) for name, model in models.items()}
                steps = {name: make_step(model, mode, precision, device, args.batch, args.size)
                         for name, model in prepared.items()}
                onnx_rows = onnx_paths if (mode, precision) == ('infer', 'fp32') else {}
                steps.update({name: make_onnx_step(path, args.threads, args.batch, args.size)
                              for name, path in onnx_rows.items()})
                if device.type == 'cuda':  # the memory pass warms up too
                    memory = {name: peak_memory_mib(step, device, args.warmup) for name, step in steps.items()}
                else:
                    memory = {}
                    for name in list(IMPLEMENTATIONS) + list(onnx_rows):
                        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                            memory[name] = pool.submit(cpu_peak_memory_mib, name, arch, mode, precision,
                                                       args, onnx_rows.get(name)).result()
                    for _ in range(args.warmup):
                        for step in steps.values():
                            step()
                times = {name: [] for name in steps}
                for _ in range(args.repeat):
                    for name, step in steps.items():
                        times[name].append(timed(step, device))
                row = dict(arch=arch, mode=mode, precision=precision, compile=args.compile, batch=args.batch,
                           size=args.size, gflops_per_image=flops / 1e9)
                for name, values in times.items():
                    row[f'{name}_img_s'] = args.batch / statistics.median(values)
                    row[f'{name}_peak_mib'] = memory[name]
                    row[f'{name}_step_s'] = values
                row['speedup'] = row['ours_img_s'] / row['release_img_s']
                row['ours_gflop_s'] = row['ours_img_s'] * 2 * flops * (3 if mode == 'train' else 1) / 1e9
                rows.append(row)
    onnx_dir.cleanup()
    env['loadavg_after'] = os.getloadavg()

    print(f"{env['device']}, torch {env['torch']}, {args.size} x {args.size}; medians of {args.repeat} steps "
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
    if args.json:
        Path(args.json).write_text(json.dumps(dict(environment=env, results=rows), indent=2))


if __name__ == '__main__':
    main()
