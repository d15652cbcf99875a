"""Convert a checkpoint of the authors' DynaMixer release to mmpretrain's layout.

    python tools/model_converters/dynamixer_to_mmpretrain.py SRC DST [--ema]

SRC: a timm-style checkpoint (``state_dict``, ``state_dict_ema`` or a bare dict; ``module.`` prefixes
are removed), read weights-only. DST loads with ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` or
``tools/test.py``. A SRC that is not such a checkpoint stops the tool with a message naming it (exit status 2).
"""
import argparse
from pathlib import Path

import torch

from mmdynamixer.checkpoints import read_checkpoint, release_state_dict, release_to_mmpretrain


def main():
    parser = argparse.ArgumentParser(description='Convert a DynaMixer release checkpoint to mmpretrain')
    parser.add_argument('src', help='release checkpoint')
    parser.add_argument('dst', help='mmpretrain checkpoint to write')
    parser.add_argument('--ema', action='store_true', help='take the EMA weights (state_dict_ema)')
    args = parser.parse_args()

    try:
        checkpoint = read_checkpoint(args.src)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f'{parser.prog}: error: {error}\n')
    try:
        state_dict = release_to_mmpretrain(release_state_dict(checkpoint, use_ema=args.ema))
    except ValueError as error:
        parser.exit(2, f'{parser.prog}: error: cannot convert {args.src}: {error}\n')
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=dict(source=str(args.src), ema=args.ema)), args.dst)
    print(f'converted {len(state_dict)} tensors{" (EMA)" if args.ema else ""} from {args.src} to {args.dst}')


if __name__ == '__main__':
    main()
