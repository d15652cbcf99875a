"""Parameters and FLOPs of DynaMixer classifiers, per arch.

    python tools/analysis/get_flops.py [--arch s m l] [--size 224 224] [--num-classes 1000] [--out-file out.json]

FLOPs are multiply-adds for one image, counted by :func:`mmdynamixer.analysis.complexity` in mmengine's
``FlopAnalyzer`` convention (fvcore's: a multiply-add is one FLOP, a LayerNorm 5 per element), the convention of
the paper's and the release's figures: 7.32 / 17.02 / 27.40 G for S / M / L at 224.
``--arch`` takes names or JSON arch dicts (keys as ``mmdynamixer.models.ARCH_KEYS``).
"""
import argparse
import json
from pathlib import Path

from mmdynamixer.analysis import complexity
from mmdynamixer.cli import add_arch_argument, add_deprecated_alias, add_size_argument, arch_label


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_argument(parser, default=('s', 'm', 'l'))
    add_size_argument(parser)
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--out-file', help='also write the results here (JSON)')
    add_deprecated_alias(parser, '--json', '--out-file', 'out_file')
    args = parser.parse_args(argv)
    if args.num_classes < 1:
        parser.error(f'--num-classes must be at least 1, got {args.num_classes}')

    height, width = args.size
    rows = []
    for arch in args.arch:
        counts = complexity(arch, args.size, args.num_classes)
        rows.append(dict(arch=arch, height=height, width=width, num_classes=args.num_classes, **counts))
    print(f'| arch | params (M) | GFLOPs at {height} x {width} (multiply-adds) |')
    print('|---|---:|---:|')
    for row in rows:
        print(f"| {arch_label(row['arch'])} | {row['params'] / 1e6:.2f} | {row['flops'] / 1e9:.3f} |")
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
