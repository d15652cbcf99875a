"""Export a DynaMixer classifier, or the backbone of a dense (mmdet / mmseg) config, to ONNX, and check the file
against the eager model with onnxruntime before reporting success.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --out-file FILE [--size H W] [--batch N] [--dynamic]
                                            [--sizes HxW [HxW ...]] [--rtol 1e-4]

What is exported:
- an mmpretrain ``ImageClassifier`` config: images -> logits (``model(images, mode='tensor')``);
- any other config with a ``backbone`` (the detection and segmentation configs): images -> the backbone's maps,
  outputs ``stage<i>`` for its ``out_indices``.
Both take float32 images (N, 3, H, W) already normalised as the config's ``data_preprocessor`` does (its mean
and std are printed); resizing, normalising and padding stay outside the graph, as in mmdeploy.

The export is :func:`mmdynamixer.export.export_onnx` (torch's dynamo exporter), traced at ``--size``. With
``--dynamic`` batch, height and width are inputs of the graph (traced at a batch of at least 2): padding amounts
and window counts are computed in it, so one file is exact at every size. Without it the file accepts exactly
``--batch`` x 3 x ``--size``, and ``--sizes`` is refused.

The check runs the file in onnxruntime (CPU) and the eager model on the same random images at ``--size`` and each
of ``--sizes`` (with ``--dynamic``; default 224x224 231x350 333x517), at ``--batch`` and ``--batch`` + 1, prints
the largest absolute and relative difference (relative to the largest eager output) per output, and fails (exit
status 1) when a relative difference exceeds ``--rtol``. The file is written beside ``--out-file`` under a
temporary name and renamed to it only when the check passes: a failed export or check leaves an existing
``--out-file`` as it was. Without CHECKPOINT the weights are random: useful to try the export, not to deploy.
Old flags ``--out``, ``--shape H W`` and ``--check-shapes H W ...`` still work for one release, with a warning.
"""
import argparse
import os.path as osp
import sys
import time

import torch
from torch import nn

from mmdynamixer.cli import add_deprecated_alias, add_size_argument, add_sizes_argument

DEFAULT_DYNAMIC_CHECKS = ['224x224', '231x350', '333x517']


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
    parser.add_argument('--out-file', help='ONNX file to write (required)')
    add_size_argument(parser, help='image size to trace at')
    parser.add_argument('--batch', type=int, default=1, help='batch to trace at (default 1)')
    parser.add_argument('--dynamic', action='store_true', help='batch, height and width dynamic')
    add_sizes_argument(parser, DEFAULT_DYNAMIC_CHECKS, help='further sizes to check the file at (needs --dynamic)')
    parser.set_defaults(sizes=None)  # the default applies with --dynamic only
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='largest allowed |onnx - eager| / max |eager| per output (default 1e-4)')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    add_deprecated_alias(parser, '--out', '--out-file', 'out_file')
    add_deprecated_alias(parser, '--shape', '--size H W', 'size', nargs=2, type=int, metavar=('H', 'W'))
    add_deprecated_alias(parser, '--check-shapes', '--sizes HxW ...', 'sizes', nargs='+', type=int)
    args = parser.parse_args(argv)
    if args.out_file is None:
        parser.error('the following arguments are required: --out-file')
    if not osp.isfile(args.config):
        parser.error(f'CONFIG {args.config!r} is not a file')
    args.size = tuple(args.size)
    if min(args.size) < 1 or args.batch < 1:
        parser.error(f'--size {args.size[0]} {args.size[1]} and --batch {args.batch} must be positive')
    if args.sizes and isinstance(args.sizes[0], int):  # --check-shapes H W [H W ...]
        if len(args.sizes) % 2 or min(args.sizes) < 1:
            parser.error(f'--check-shapes takes positive H W pairs, got {args.sizes}')
        args.sizes = list(zip(args.sizes[::2], args.sizes[1::2]))
    if args.sizes is not None and not args.dynamic:
        parser.error(f'--sizes {" ".join(f"{h}x{w}" for h, w in args.sizes)} needs --dynamic: a static file accepts '
                     f'only --batch x 3 x --size ({args.batch}x3x{args.size[0]}x{args.size[1]})')
    if args.sizes is None:
        args.sizes = [tuple(map(int, s.split('x'))) for s in DEFAULT_DYNAMIC_CHECKS] if args.dynamic else []
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


def main(argv=None):
    parser, args = parse_args(argv)
    from mmengine.config import Config

    import mmdynamixer  # noqa: F401  (registers DynaMixer and the checkpoint types)
    from mmdynamixer.export import ExportMismatch, export_onnx

    cfg = Config.fromfile(args.config)
    try:
        module, names = build(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        parser.exit(2, f'{parser.prog}: error: {error}\n')
    preprocessor = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    print(f'{args.config}: exporting {"logits" if names == ["logits"] else ", ".join(names)}; inputs normalised '
          f'with mean {preprocessor.get("mean")}, std {preprocessor.get("std")}'
          f'{"" if args.checkpoint else " (no CHECKPOINT: random weights)"}', flush=True)

    batches = [args.batch] + ([args.batch + 1] if args.dynamic else [])
    shapes = [(batch, *size) for batch in batches for size in [args.size] + args.sizes]
    start = time.perf_counter()
    try:
        differences = export_onnx(module, args.out_file, args.size, args.batch, args.dynamic, names, shapes,
                                  args.rtol, args.opset)
        failed = None
    except ExportMismatch as error:
        differences, failed = error.differences, error
    print(f'exported and checked against eager in onnxruntime in {time.perf_counter() - start:.0f} s:')
    for d in differences:
        over = '' if d.rel_diff <= args.rtol else f'  > rtol {args.rtol:.0e}'
        print(f'  {"x".join(map(str, (d.shape[0], 3) + d.shape[1:]))} {d.output} {d.output_shape}: max abs diff '
              f'{d.abs_diff:.2e}, max rel diff {d.rel_diff:.2e}{over}')
    if failed is not None:
        print(f'FAILED: {failed}', file=sys.stderr)
        sys.exit(1)
    print(f'OK: {args.out_file} matches eager within {max(d.rel_diff for d in differences):.2e} (relative) at '
          f'{len(args.sizes) + 1} size(s) x batch {"/".join(map(str, batches))}')


if __name__ == '__main__':
    main()
