"""Adapt a DynaMixer checkpoint's ``generate`` layers to another input size before fine-tuning at it.

    python tools/model_converters/dynamixer_resample.py SRC DST --resolution 84 [--ema]

SRC: an mmpretrain checkpoint (``state_dict``, keys ``backbone.*``; one written by training with ``EMAHook``
holds the EMA weights there) or a release checkpoint (``--ema`` takes its ``state_dict_ema``), read
weights-only. Every ``generate`` weight and bias is resampled over its token axes to the token grid of
``--resolution``-pixel square images (``mmdynamixer.checkpoints.resample_generate``); everything else is copied.
The tool prints the ``resolutions`` the fine-tuning config's arch needs so the resampled layers load. Bad input
stops it with a message naming it (exit status 2).
"""
import argparse
from pathlib import Path

import torch

from mmdynamixer.checkpoints import generate_token_counts, read_checkpoint, release_state_dict, resample_generate


def main():
    parser = argparse.ArgumentParser(description='Resample DynaMixer generate layers to another input size')
    parser.add_argument('src', help='mmpretrain or release checkpoint')
    parser.add_argument('dst', help='checkpoint to write (same key layout as SRC)')
    parser.add_argument('--resolution', type=int, required=True, help='pixels per side of the new input')
    parser.add_argument('--ema', action='store_true', help='take a release checkpoint\'s state_dict_ema')
    args = parser.parse_args()

    try:
        state_dict = release_state_dict(read_checkpoint(args.src), use_ema=args.ema)
        resolutions = list(generate_token_counts(state_dict, args.resolution).values())
        state_dict = resample_generate(state_dict, args.resolution)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f'{parser.prog}: error: {args.src}: {error}\n')
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    meta = dict(source=str(args.src), resolution=args.resolution, resolutions=resolutions)
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'resampled generate layers of {args.src} to {args.resolution} px (tokens per side per stage: '
          f'{resolutions}) in {args.dst}\nset the config\'s arch resolutions={resolutions}')


if __name__ == '__main__':
    main()
