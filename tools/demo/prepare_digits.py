"""Write scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes) as an ImageNet-style folder,
the demo's data.

    python tools/demo/prepare_digits.py data/digits [--size 56 56] [--val-fraction 0.2]
"""
import argparse
import os.path as osp
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from mmdynamixer.cli import (FolderNotOursError, add_deprecated_alias, add_size_argument, square_size,
                             write_folder_whole)


def write_digits_folder(root: str, size: Tuple[int, int] = (56, 56), val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Write ``root/{train,val}/<digit>/<index>.png`` (RGB, ``size`` = (height, width), bilinear scaling).

    The split is stratified and fixed by ``seed``, so the held-out images never reach training.
    Returns the number of images per split. Written by :func:`mmdynamixer.cli.write_folder_whole`: ``root`` exists
    only whole, and an existing ``root`` is replaced only if it is empty or an earlier output of a tool
    (:class:`~mmdynamixer.cli.FolderNotOursError` otherwise).
    """
    with write_folder_whole(root) as folder:
        return write_digits(folder, size, val_fraction, seed)


def split_digits(val_fraction: float = 0.2, seed: int = 0) -> dict:
    """scikit-learn's digits split stratified by ``seed``: ``{'train': [...], 'val': [...]}`` of (index, label), so
    that every tool built on the digits holds out the same ones."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.default_rng(seed)
    split = {'train': [], 'val': []}
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(labels == label))
        num_val = int(round(len(indices) * val_fraction))
        split['val'] += [(int(i), label) for i in indices[:num_val]]
        split['train'] += [(int(i), label) for i in indices[num_val:]]
    return split


def write_digits(root: Path, size: Tuple[int, int], val_fraction: float, seed: int) -> dict:
    """The images of :func:`write_digits_folder`, written into the existing folder ``root``."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    height, width = size
    counts = {}
    for split, samples in split_digits(val_fraction, seed).items():
        for index, label in samples:
            folder = Path(root, split, str(label))
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            image = Image.fromarray(pixels, mode='L').resize((width, height), Image.BILINEAR)
            image.convert('RGB').save(osp.join(folder, f'{index:04d}.png'))
        counts[split] = len(samples)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='output folder (train/ and val/ are written inside)')
    add_size_argument(parser, default=(56, 56), help='image size in pixels')
    add_deprecated_alias(parser, '--image-size', '--size', 'size', type=square_size('--image-size'))
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of each class held out for validation, in (0, 1) (default 0.2)')
    args = parser.parse_args()
    if not 0 < args.val_fraction < 1:
        parser.error(f'--val-fraction must be in (0, 1), got {args.val_fraction}')
    try:
        counts = write_digits_folder(args.out, args.size, args.val_fraction)
    except FolderNotOursError as error:
        parser.error(str(error))
    print(f'wrote {counts["train"]} training and {counts["val"]} held-out images under {args.out}')


if __name__ == '__main__':
    main()
