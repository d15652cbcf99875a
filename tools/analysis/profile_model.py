"""Where the time of a DynaMixer step goes, by op category, for this implementation and the release's (on CPU).

    python tools/analysis/profile_model.py --arch s --batch 8 [--mode infer train] [--threads 2] [--steps 3]
                                           [--out-file profile.json]

Both models hold the same weights. Steps (inference, or forward + backward + AdamW step) of the two models
alternate as :func:`mmdynamixer.benchmarking.alternate` runs them (two warm-up steps each, then ``--steps``
rounds), each timed step under torch.profiler; the self CPU time of every op is summed into a category (matmuls,
LayerNorm, GELU, softmax, copies/permutes, elementwise, optimizer, other) and printed per step in ms and % as a
markdown table, one column pair per model. The profiler adds a little time per op, so the totals are somewhat above
an unprofiled step (``tools/analysis/benchmark.py`` times those). The release's forward runs only at its arch's
size (7 x resolutions[0] a side: 224 for S, M and L).
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mmdynamixer.benchmarking import alternate
from mmdynamixer.cli import add_arch_argument, add_size_argument, arch_label, require_release_size
from mmdynamixer.models import DynaMixerNet, resolve_arch
from mmdynamixer.release_reference import RefDynaMixer

CATEGORIES = ('matmul', 'conv', 'layernorm', 'gelu', 'softmax', 'copy/permute', 'elementwise', 'optimizer', 'other')
# Ops by category, matched on the op name without its namespace.
OPS = {
    'matmul': {'mm', 'addmm', 'bmm', 'baddbmm', 'matmul', '_linear_pointwise', 'linear', 'dot', 'addmv', 'mv'},
    'conv': {'convolution', '_convolution', 'mkldnn_convolution', 'convolution_backward', 'conv2d'},
    'layernorm': {'native_layer_norm', 'native_layer_norm_backward', 'layer_norm'},
    'gelu': {'gelu', 'gelu_backward'},
    'softmax': {'_softmax', '_softmax_backward_data', 'softmax', '_log_softmax', '_log_softmax_backward_data'},
    'copy/permute': {'copy_', 'clone', 'contiguous', '_to_copy', 'to', 'cat', 'stack', 'constant_pad_nd', 'fill_',
                     'zero_', 'zeros', 'zeros_like', 'index', 'masked_fill', 'empty_like', 'resize_', 't', 'transpose',
                     'permute', 'view', 'reshape', 'unsqueeze', 'expand', 'as_strided', 'slice', 'select', 'unflatten',
                     'flatten', '_unsafe_view', 'split', 'chunk', 'narrow', 'squeeze', 'alias', 'detach', 'empty',
                     'empty_strided', 'new_empty', 'new_zeros', 'unbind', 'sum_to_size'},
    'elementwise': {'add', 'add_', 'mul', 'mul_', 'sub', 'div', 'div_', 'sum', 'mean', 'neg', 'exp', 'addcmul_',
                    'addcdiv_', 'where', 'bernoulli_', 'pow', 'sqrt', 'rsqrt', 'lerp_', 'sub_', 'nll_loss_forward',
                    'nll_loss_backward', 'nll_loss', 'cross_entropy_loss', 'nll_loss_nd', 'log_softmax', 'expand_as',
                    'ones_like', 'sigmoid', 'mse_loss', 'amax', 'max'},
}


def category(op_name: str) -> str:
    """The category of a profiler op name such as ``aten::addmm`` or ``mkldnn::_linear_pointwise``."""
    if op_name.startswith('Optimizer.') or '_foreach_' in op_name or op_name.startswith('aten::_fused_adam'):
        return 'optimizer'
    name = op_name.split('::')[-1]
    for cat, names in OPS.items():
        if name in names:
            return cat
    return 'other'


def make_step(model, mode, images, labels):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if mode == 'train' else None

    def step():
        if mode == 'infer':
            with torch.no_grad():
                model(images)
            return
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def profile_steps(steps: dict, repeat: int):
    """Self CPU ms per step by category, and by op, of each named step: two warm-up steps of each, then ``repeat``
    rounds of one profiled step of each in turn."""
    totals = {name: defaultdict(float) for name in steps}
    by_op = {name: defaultdict(float) for name in steps}

    def profiled(name, step):
        def run():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            for event in prof.key_averages():
                if event.key.startswith('ProfilerStep') or event.key.startswith('autograd::engine'):
                    continue
                ms = event.self_cpu_time_total / 1e3 / repeat
                totals[name][category(event.key)] += ms
                by_op[name][event.key] += ms
        return run

    for _ in range(2):
        for step in steps.values():
            step()
    alternate({name: profiled(name, step) for name, step in steps.items()}, 'cpu', warmup=0, repeat=repeat)
    return totals, by_op


def print_table(title: str, results: dict) -> None:
    names = list(results)
    print(f'\n{title}\n')
    print('| category | ' + ' | '.join(f'{n} ms | {n} %' for n in names) + ' |')
    print('|---|' + '---:|---:|' * len(names))
    sums = {n: sum(results[n].values()) for n in names}
    for cat in CATEGORIES:
        if not any(results[n].get(cat, 0.0) for n in names):
            continue
        cells = ' | '.join(f'{results[n].get(cat, 0.0):.1f} | {100 * results[n].get(cat, 0.0) / sums[n]:.1f}'
                           for n in names)
        print(f'| {cat} | {cells} |')
    print('| **total** | ' + ' | '.join(f'**{sums[n]:.1f}** | 100' for n in names) + ' |')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_argument(parser)
    parser.add_argument('--batch', type=int, default=8)
    add_size_argument(parser, help="input size, the release's (7 x resolutions[0] a side)")
    parser.add_argument('--mode', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--steps', type=int, default=3, help='profiled steps per model and mode')
    parser.add_argument('--top', type=int, default=0, help='also print the ops that take the most time')
    parser.add_argument('--out-file', help='also write the ms per category and per op here (JSON)')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.threads < 1:
        parser.error(f'--batch {args.batch}, --steps {args.steps} and --threads {args.threads} must be at least 1')
    require_release_size(parser, args.arch, args.size)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    report = []
    for arch in args.arch:
        ours = DynaMixerNet(arch)
        reference = RefDynaMixer(resolve_arch(arch))
        reference.load_state_dict(ours.state_dict())
        images = torch.randn(args.batch, 3, *args.size)
        labels = torch.randint(0, 1000, (args.batch,))
        print(f'DynaMixer-{arch_label(arch)}, batch {args.batch}, {args.size[0]}x{args.size[1]}, float32, '
              f'{args.threads} threads, self CPU ms per step (mean of {args.steps} steps)')
        for mode in args.mode:
            for model in (ours, reference):
                model.train(mode == 'train')
            steps = {'ours': make_step(ours, mode, images, labels),
                     'release': make_step(reference, mode, images, labels)}
            results, by_op = profile_steps(steps, args.steps)
            print_table('inference' if mode == 'infer' else 'training step (forward, backward, AdamW)', results)
            for name, ops in by_op.items():
                if args.top:
                    top = sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]
                    print(f'\n{name}: ' + ', '.join(f'{op} {ms:.1f}' for op, ms in top))
            report.append(dict(arch=arch, mode=mode, batch=args.batch, ms_by_category=results, ms_by_op=by_op))
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
