"""Parameters and FLOPs of DynaMixer classifiers, per arch.

    python tools/analysis/get_flops.py [--arch s m l] [--size 224] [--num-classes 1000] [--json out.json]

FLOPs are mmengine's FlopAnalyzer counts for one image (fvcore's convention: a multiply-add is one
FLOP), as the paper's and the release's figures: 7.32 / 17.02 / 27.40 G for S / M / L at 224.
``--arch`` takes names or JSON arch dicts (keys as ``mmdynamixer.models.ARCH_KEYS``).
"""
import argparse
import json
from pathlib import Path

from mmdynamixer.analysis import arch_label, complexity, parse_arch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=['s', 'm', 'l'], help='s, m, l or a JSON arch dict')
    parser.add_argument('--size', type=int, default=224, help='input height and width')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    try:
        archs = [parse_arch(text) for text in args.arch]
    except ValueError as error:
        parser.error(str(error))

    rows = []
    for arch in archs:
        counts = complexity(arch, args.size, args.num_classes)
        rows.append(dict(arch=arch, size=args.size, num_classes=args.num_classes, **counts))
    print(f'| arch | params (M) | GFLOPs at {args.size} (multiply-adds) |')
    print('|---|---:|---:|')
    for row in rows:
        print(f"| {arch_label(row['arch'])} | {row['params'] / 1e6:.2f} | {row['flops'] / 1e9:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
