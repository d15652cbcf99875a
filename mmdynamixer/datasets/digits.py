"""scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes) as an ImageNet-style folder."""
import os.path as osp
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_folder(root: str, image_size: int = 56, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Write ``root/{train,val}/<digit>/<index>.png`` (RGB, ``image_size`` square, bilinear upscaling).

    The split is stratified and fixed by ``seed``, so the held-out images never reach training.
    Returns the number of images per split. The folder is written beside ``root`` and renamed into
    place when complete, replacing what was there: ``root`` exists only whole.
    """
    from sklearn.datasets import load_digits

    final = Path(root)
    root = final.with_name(final.name + '.partial')
    shutil.rmtree(root, ignore_errors=True)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {'train': 0, 'val': 0}
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        num_val = int(round(len(indices) * val_fraction))
        for split, chosen in (('val', indices[:num_val]), ('train', indices[num_val:])):
            folder = Path(root, split, str(label))
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
                image = Image.fromarray(pixels, mode='L').resize((image_size, image_size), Image.BILINEAR)
                image.convert('RGB').save(osp.join(folder, f'{index:04d}.png'))
            counts[split] += len(chosen)
    shutil.rmtree(final, ignore_errors=True)
    root.rename(final)
    return counts
