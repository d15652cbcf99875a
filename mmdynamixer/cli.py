"""What the command-line tools share: checks of their file arguments that stop with argparse's error."""
import argparse
import os.path as osp
from typing import Optional

import numpy as np


def check_inputs(parser: argparse.ArgumentParser, image: Optional[str] = None, config: Optional[str] = None,
                 checkpoint: Optional[str] = None) -> Optional[np.ndarray]:
    """``parser.error`` (exit 2) naming the first argument given that cannot be used: IMAGE or CONFIG not a
    file, CHECKPOINT not a PyTorch checkpoint, IMAGE not an image mmcv can read. Returns the image read (BGR),
    if one was given."""
    for name, path in (('IMAGE', image), ('CONFIG', config)):
        if path is not None and not osp.isfile(path):
            parser.error(f'{name} {path!r} is not a file')
    if checkpoint is not None:
        from .checkpoints import check_checkpoint_file
        try:
            check_checkpoint_file(checkpoint)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    if image is None:
        return None
    import mmcv
    pixels = mmcv.imread(image)
    if pixels is None:
        parser.error(f'IMAGE {image!r} is not an image mmcv can read')
    return pixels
