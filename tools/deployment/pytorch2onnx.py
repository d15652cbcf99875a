"""Export a DynaMixer classifier, or the backbone of a dense (mmdet / mmseg) config, to ONNX, and check the file
against the eager model with onnxruntime before reporting success.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --out FILE [--shape H W] [--batch N] [--dynamic]
                                            [--check-shapes H W [H W ...]] [--rtol 1e-4]

What is exported:
- an mmpretrain ``ImageClassifier`` config: images -> logits (``model(images, mode='tensor')``);
- any other config with a ``backbone`` (the detection and segmentation configs): images -> the backbone's maps,
  outputs ``stage<i>`` for its ``out_indices``.
Both take float32 images (N, 3, H, W) already normalised as the config's ``data_preprocessor`` does (its mean
and std are printed); resizing, normalising and padding stay outside the graph, as in mmdeploy.

torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``) traces the model at ``--shape``. With
``--dynamic`` batch, height and width are inputs of the graph (traced at a batch of at least 2): padding amounts
and window counts are computed in it, so one file is exact at every size (check it with ``--check-shapes``).
Without it the file accepts exactly ``--batch`` x 3 x ``--shape`` and onnxruntime refuses other sizes.

The check runs the file in onnxruntime (CPU) and the eager model on the same random images at ``--shape`` and each
``--check-shapes`` size (default with ``--dynamic``: 224 x 224 and two odd sizes), prints the largest absolute and
relative difference (relative to the largest eager output) per output, and fails (exit status 1) when a relative
difference exceeds ``--rtol``. The file is exported beside ``--out`` under a temporary name and renamed to ``--out``
only when the check passes: a failed export or check leaves an existing ``--out`` as it was. Without CHECKPOINT the
weights are random: useful to try the export, not to deploy.
"""
import argparse
import contextlib
import os
import os.path as osp
import sys
import time
import uuid

import torch
from torch import nn

DEFAULT_DYNAMIC_CHECKS = [(224, 224), (231, 350), (333, 517)]


class Classifier(nn.Module):
    """An mmpretrain classifier as images -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, mode='tensor')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='classifier, detection or segmentation config')
    parser.add_argument('checkpoint', nargs='?', help="checkpoint of that config's model (default: random weights)")
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--shape', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'),
                        help='image size to trace at (default 224 224)')
    parser.add_argument('--batch', type=int, default=1, help='batch to trace at (default 1)')
    parser.add_argument('--dynamic', action='store_true', help='batch, height and width dynamic')
    parser.add_argument('--check-shapes', nargs='+', type=int, metavar='H W',
                        help='further sizes to check the file at, as H W pairs (needs --dynamic)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='largest allowed |onnx - eager| / max |eager| per output (default 1e-4)')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'CONFIG {args.config!r} is not a file')
    if min(args.shape) < 1 or args.batch < 1:
        parser.error(f'--shape {args.shape} and --batch {args.batch} must be positive')
    if args.check_shapes is not None:
        if not args.dynamic:
            parser.error('--check-shapes needs --dynamic: a static file accepts only --batch x 3 x --shape')
        if len(args.check_shapes) % 2 or min(args.check_shapes) < 1:
            parser.error(f'--check-shapes takes positive H W pairs, got {args.check_shapes}')
        args.check_shapes = list(zip(args.check_shapes[::2], args.check_shapes[1::2]))
    elif args.dynamic:
        args.check_shapes = DEFAULT_DYNAMIC_CHECKS
    else:
        args.check_shapes = []
    return parser, args


def build(cfg, checkpoint):
    """The module to export, its output names and the state-dict prefix it reads from a CHECKPOINT."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    if cfg.model.get('type') == 'ImageClassifier':
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            module = Classifier(MODELS.build(cfg.model))
        prefix, target, names = '', module.model, ['logits']
    elif 'backbone' in cfg.model:
        backbone_cfg = cfg.model.backbone.copy()
        backbone_cfg.pop('init_cfg', None)  # the weights come from CHECKPOINT
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            module = MODELS.build(backbone_cfg)
        if not hasattr(module, 'out_indices'):
            raise ValueError(f'backbone {backbone_cfg.get("type")!r} has no out_indices to name its outputs by')
        prefix, target, names = 'backbone.', module, [f'stage{i}' for i in module.out_indices]
    else:
        raise ValueError(f"model.type={cfg.model.get('type')!r} is neither an ImageClassifier nor a model with a "
                         f'backbone: nothing to export')
    if checkpoint:
        from mmdynamixer.checkpoints import read_checkpoint
        loaded = read_checkpoint(checkpoint)
        state_dict = loaded.get('state_dict', loaded)
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise ValueError(f'{checkpoint} has no {prefix!r} keys for this config; its keys start like '
                             f'{list(loaded.get("state_dict", loaded))[:3]}')
        target.load_state_dict(state_dict, strict=True)
    return module.eval(), names


def check(path, module, names, sizes, batch, rtol):
    """Run the ONNX file and the eager model on the same images; returns the worst relative difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for height, width in sizes:
        images = torch.randn(batch, 3, height, width, generator=gen)
        with torch.no_grad():
            expected = module(images)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        actual = session.run(None, {input_name: images.numpy()})
        for name, ours, theirs in zip(names, actual, expected):
            if tuple(ours.shape) != tuple(theirs.shape):
                raise ValueError(f'{height}x{width}: output {name} has shape {ours.shape} in onnxruntime, '
                                 f'{tuple(theirs.shape)} in eager')
            abs_diff = (torch.from_numpy(ours) - theirs).abs().max().item()
            rel_diff = abs_diff / max(theirs.abs().max().item(), 1e-12)
            worst = max(worst, rel_diff)
            print(f'  {batch}x3x{height}x{width} {name} {tuple(ours.shape)}: max abs diff {abs_diff:.2e}, '
                  f'max rel diff {rel_diff:.2e}{"" if rel_diff <= rtol else f"  > rtol {rtol:.0e}"}')
    return worst


def main(argv=None):
    parser, args = parse_args(argv)
    from mmengine.config import Config

    import mmdynamixer  # noqa: F401  (registers DynaMixer and the checkpoint types)

    cfg = Config.fromfile(args.config)
    try:
        module, names = build(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        parser.exit(2, f'{parser.prog}: error: {error}\n')
    preprocessor = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    print(f'{args.config}: exporting {"logits" if names == ["logits"] else ", ".join(names)}; inputs normalised '
          f'with mean {preprocessor.get("mean")}, std {preprocessor.get("std")}'
          f'{"" if args.checkpoint else " (no CHECKPOINT: random weights)"}')

    # A dynamic graph is traced at a batch of at least 2: traced at 1, the classifier's graph kept a 1 in a reshape.
    example = torch.randn(max(args.batch, 2) if args.dynamic else args.batch, 3, *args.shape)
    # Dim.DYNAMIC, not a named Dim: a declared range makes export prove every guard on it, and its solver cannot
    # prove e.g. ceil(width / 7) > 0.
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    start = time.perf_counter()
    folder = osp.dirname(osp.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    # Renamed to --out once checked.
    candidate = osp.join(folder, f'.{osp.basename(args.out)}.{uuid.uuid4().hex[:12]}.onnx')
    try:
        # external_data=False: the weights inside the file (they are far below ONNX's 2 GB limit), so that renaming
        # it is the whole write; torch's default puts them in a second file named after this temporary one.
        torch.onnx.export(module, (example,), candidate, dynamo=True, external_data=False,
                          dynamic_shapes=(dims,) if args.dynamic else None, input_names=['images'],
                          output_names=names, opset_version=args.opset, verbose=False)
        print(f'exported {args.out} ({osp.getsize(candidate) / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} '
              f's; checking it against eager with onnxruntime before writing it:')

        sizes = [tuple(args.shape)] + [s for s in args.check_shapes if s != tuple(args.shape)]
        batches = [args.batch] + ([args.batch + 1] if args.dynamic else [])
        worst = max(check(candidate, module, names, sizes, batch, args.rtol) for batch in batches)
        if worst > args.rtol:
            print(f'FAILED: onnxruntime differs from eager by {worst:.2e} (relative) > --rtol {args.rtol:.0e}; '
                  f'{args.out} not written', file=sys.stderr)
            sys.exit(1)
        os.replace(candidate, args.out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(candidate)
    print(f'OK: {args.out} matches eager within {worst:.2e} (relative) at {len(sizes)} size(s) x batch '
          f'{"/".join(map(str, batches))}')


if __name__ == '__main__':
    main()
