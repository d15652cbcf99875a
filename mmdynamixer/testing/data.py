"""Small generated datasets for tests and benchmarks, in the layouts the toolboxes read."""
from pathlib import Path

import numpy as np


def write_image_folder(root: Path, num_classes: int = 4, per_class: int = 8, size: int = 56, seed: int = 0) -> Path:
    """A tiny ImageNet-style folder (train/ and val/ of <wnid>/*.JPEG) of random class-coloured images."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for c in range(num_classes):
            folder = root / split / f'n{c:08d}'
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 64, (size, size, 3)) + np.array([60 * c, 40, 200 - 40 * c])
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f'{split}_{c}_{i}.JPEG')
    return root
