"""Images/s of DynaMixer against a straightforward re-implementation of the release, side by side.

    python tools/analysis/benchmark.py --arch s --batch 8 [--mode infer train] [--precision fp32 bf16 fp16]
                                       [--compile] [--device cpu|cuda] [--repeat 7] [--json out.json]

Both models hold the same weights; each measurement alternates ours and the reference, one timed
step each, and reports medians, so drifts in machine load hit both alike. A training step is
forward, backward and an AdamW step. Prints a markdown table (and JSON with --json).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tests'))
from release_reference import RefDynaMixer  # noqa: E402

from mmdynamixer.models import DynaMixerNet, arch_zoo  # noqa: E402

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


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


def timed(step, device):
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=['s'], choices=sorted(arch_zoo))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--mode', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    parser.add_argument('--precision', nargs='+', default=['fp32'], choices=sorted(DTYPES))
    parser.add_argument('--compile', action='store_true', help='torch.compile both models')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    device = torch.device(args.device)

    rows = []
    for arch in args.arch:
        ours = DynaMixerNet(arch).to(device)
        reference = RefDynaMixer(arch_zoo[arch]).to(device)
        reference.load_state_dict(ours.state_dict())
        for mode in args.mode:
            for precision in args.precision:
                models = {'ours': ours, 'release': reference}
                for model in models.values():
                    model.train(mode == 'train')
                if args.compile:
                    models = {k: torch.compile(m) for k, m in models.items()}
                steps = {k: make_step(m, mode, precision, device, args.batch, args.size) for k, m in models.items()}
                for _ in range(args.warmup):
                    for step in steps.values():
                        step()
                times = {k: [] for k in steps}
                for _ in range(args.repeat):
                    for name, step in steps.items():
                        times[name].append(timed(step, device))
                row = dict(arch=arch, mode=mode, precision=precision, compile=args.compile, batch=args.batch,
                           size=args.size, device=str(device))
                for name, values in times.items():
                    row[f'{name}_img_s'] = args.batch / statistics.median(values)
                row['speedup'] = row['ours_img_s'] / row['release_img_s']
                rows.append(row)

    print(f'| arch | mode | precision | compile | batch | ours img/s | release img/s | ours / release |')
    print('|---|---|---|---|---|---:|---:|---:|')
    for r in rows:
        print(f"| {r['arch'].upper()} | {r['mode']} | {r['precision']} | {r['compile']} | {r['batch']} | "
              f"{r['ours_img_s']:.2f} | {r['release_img_s']:.2f} | {r['speedup']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
