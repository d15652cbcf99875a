"""Write digit scenes: scikit-learn's handwritten digits pasted onto noisy canvases, a detection and segmentation
set made on the spot in COCO's layout (the dense demo's data).

    .venv/bin/python tools/demo/prepare_digit_scenes.py data/digit_scenes [--train 1000] [--val 100] [--seed 0]

Each scene holds 1 to 5 digits, each scaled to 20-60 pixels and coloured, none overlapping another, on a noisy
background; canvas sides are 84-168 pixels and never multiples of 7 (nor of 14), so that the backbone's padding is
always exercised. Train scenes use only the classification demo's training digits and held-out scenes only its
held-out digits (``prepare_digits.split_digits``). Written whole, deterministic by ``--seed``:

    images/{train,val}/<n>.png                  RGB scenes
    annotations/instances_{train,val}.json      COCO: bbox [x, y, w, h] of the ink, polygons traced from the ink,
                                                categories '0'..'9' with ids 1..10 (``digit_index``: the digit used)
    masks/{train,val}/<n>.png                   semantic labels: 0 background, k + 1 the ink of digit k (11 classes)
"""
import argparse
import json
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image
from prepare_digits import split_digits  # the same held-out digits as the classification demo

from mmdynamixer.cli import FolderNotOursError, write_folder_whole

DIGITS_PER_SCENE = (1, 5)
DIGIT_SIDE = (20, 60)
CANVAS_SIDE = (84, 168)
INK_THRESHOLD = 0.5  # of the scaled digit's intensity, 0..1: what counts as ink for boxes, polygons and masks
PLACEMENT_TRIES = 50


def canvas_side(rng: np.random.Generator) -> int:
    """A side in CANVAS_SIDE that is not a multiple of 7 (so of 14 neither)."""
    while True:
        side = int(rng.integers(CANVAS_SIDE[0], CANVAS_SIDE[1] + 1))
        if side % 7:
            return side


def overlaps(box: Tuple[int, int, int, int], placed: Sequence[Tuple[int, int, int, int]]) -> bool:
    x, y, w, h = box
    return any(x < px + pw and px < x + w and y < py + ph and py < y + h for px, py, pw, ph in placed)


def polygons(ink: np.ndarray, x: int, y: int, upsample: int = 4) -> List[List[float]]:
    """COCO polygons of the outer contours of ``ink`` (a boolean mask) at the canvas position (x, y). Traced on the
    mask upsampled ``upsample`` times, so that they run 1 / (2 x upsample) pixel inside the ink's edge rather than
    through the centres of its edge pixels (which would drop half of a thin stroke)."""
    fine = np.kron(ink.astype(np.uint8), np.ones((upsample, upsample), np.uint8))
    contours, _ = cv2.findContours(fine, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[round(float(v), 3) for point in contour[:, 0]
             for v in ((point[0] + 0.5) / upsample + x, (point[1] + 0.5) / upsample + y)]
            for contour in contours if len(contour) >= 3]


def scene(rng: np.random.Generator, pool: Sequence[Tuple[int, int]], images: np.ndarray):
    """One scene: its RGB pixels, its semantic mask, and (digit index, label, bbox, polygons, area) per digit."""
    height, width = canvas_side(rng), canvas_side(rng)
    background = rng.integers(0, 70, 3)
    pixels = np.clip(background + rng.normal(0, 12, (height, width, 3)), 0, 255)
    mask = np.zeros((height, width), np.uint8)
    placed, objects = [], []
    for _ in range(int(rng.integers(DIGITS_PER_SCENE[0], DIGITS_PER_SCENE[1] + 1))):
        index, label = pool[int(rng.integers(len(pool)))]
        side = int(rng.integers(DIGIT_SIDE[0], min(DIGIT_SIDE[1], height, width) + 1))
        for _ in range(PLACEMENT_TRIES):
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            if not overlaps((x, y, side, side), placed):
                break
        else:
            continue  # no room left for this one
        placed.append((x, y, side, side))
        alpha = np.asarray(Image.fromarray((images[index] * (255.0 / 16.0)).astype(np.uint8)).resize(
            (side, side), Image.BILINEAR), np.float64) / 255.0
        ink = alpha > INK_THRESHOLD
        colour = rng.integers(150, 256, 3)
        region = pixels[y:y + side, x:x + side]
        pixels[y:y + side, x:x + side] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        mask[y:y + side, x:x + side][ink] = label + 1
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        bbox = [x + int(cols[0]), y + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        objects.append((index, label, bbox, polygons(ink, x, y), int(ink.sum())))
    return pixels.round().astype(np.uint8), mask, objects


def write_scenes(root: Path, counts: dict, seed: int) -> None:
    """The scenes of each split (``counts``: scenes per split), written into the existing folder ``root``."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    pools = split_digits()
    categories = [dict(id=k + 1, name=str(k)) for k in range(10)]
    (root / 'annotations').mkdir()
    for split, count in counts.items():
        rng = np.random.default_rng([seed, 0 if split == 'train' else 1])
        (root / 'images' / split).mkdir(parents=True)
        (root / 'masks' / split).mkdir(parents=True)
        coco = dict(images=[], annotations=[], categories=categories)
        for image_id in range(1, count + 1):
            pixels, mask, objects = scene(rng, pools[split], images)
            name = f'{image_id:06d}.png'
            Image.fromarray(pixels).save(root / 'images' / split / name)
            Image.fromarray(mask).save(root / 'masks' / split / name)
            coco['images'].append(dict(id=image_id, file_name=name, height=mask.shape[0], width=mask.shape[1]))
            for index, label, bbox, polygon, area in objects:
                coco['annotations'].append(dict(id=len(coco['annotations']) + 1, image_id=image_id,
                                                category_id=label + 1, bbox=bbox, segmentation=polygon, area=area,
                                                iscrowd=0, digit_index=index))
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='output folder (images/, annotations/ and masks/ are written inside)')
    parser.add_argument('--train', type=int, default=1000, help='training scenes (default 1000)')
    parser.add_argument('--val', type=int, default=100, help='held-out scenes (default 100)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the scenes (default 0)')
    args = parser.parse_args()
    for name in ('train', 'val'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1, got {getattr(args, name)}')
    try:
        with write_folder_whole(args.out) as folder:
            write_scenes(folder, dict(train=args.train, val=args.val), args.seed)
    except FolderNotOursError as error:
        parser.error(str(error))
    print(f'wrote {args.train} training and {args.val} held-out scenes under {args.out}')


if __name__ == '__main__':
    main()
