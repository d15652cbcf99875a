"""Adapt a DynaMixer checkpoint's ``generate`` layers to another input size before fine-tuning at it.

    python tools/model_converters/dynamixer_resample.py SRC DST --size 84 [--ema]

SRC: an mmpretrain checkpoint (``state_dict``, keys ``backbone.*``; one written by training with ``EMAHook``
holds the EMA weights there) or a release checkpoint (``--ema`` takes its ``state_dict_ema``), read
weights-only. Every ``generate`` weight and bias is resampled over its token axes to the token grid of square
``--size``-pixel images (``mmdynamixer.checkpoints.resample_generate``; an arch has one token count per stage, so
``--size H W`` must have H == W); everything else is copied.
The tool prints the ``resolutions`` the fine-tuning config's arch needs so the resampled layers load. Bad input
stops it with a message naming it (exit status 2).
"""
import argparse
from pathlib import Path

import torch

from mmdynamixer.checkpoints import generate_token_counts, read_checkpoint, release_state_dict, resample_generate
from mmdynamixer.cli import add_deprecated_alias, add_size_argument
from mmdynamixer.engine import mmengine_checkpoint_loading


def main():
    parser = argparse.ArgumentParser(description='Resample DynaMixer generate layers to another input size')
    parser.add_argument('src', help='mmpretrain or release checkpoint')
    parser.add_argument('dst', help='checkpoint to write (same key layout as SRC)')
    add_size_argument(parser, default=None, help='the new input size, square (an arch has one token count per stage)')
    add_deprecated_alias(parser, '--resolution', '--size', 'size', type=int, nargs=1)
    parser.add_argument('--ema', action='store_true', help='take a release checkpoint\'s state_dict_ema')
    args = parser.parse_args()
    if args.size is None:
        parser.error('--size is required: the side in pixels of the input to fine-tune at, e.g. --size 84')
    height, width = args.size[0], args.size[-1]  # the deprecated --resolution N stores [N]
    if height != width:
        parser.error(f'--size {height} {width} is not square: a DynaMixer arch has one token count per stage for '
                     f'both axes (resolutions), so give one side, e.g. --size {height}')
    resolution = height

    try:
        with mmengine_checkpoint_loading():  # what tools/train.py saves beside the weights (its message hub)
            state_dict = release_state_dict(read_checkpoint(args.src), use_ema=args.ema)
        resolutions = list(generate_token_counts(state_dict, resolution).values())
        state_dict = resample_generate(state_dict, resolution)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f'{parser.prog}: error: {args.src}: {error}\n')
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    meta = dict(source=str(args.src), resolution=resolution, resolutions=resolutions)
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'resampled generate layers of {args.src} to {resolution} px (tokens per side per stage: '
          f'{resolutions}) in {args.dst}\nset the config\'s arch resolutions={resolutions}')


if __name__ == '__main__':
    main()
