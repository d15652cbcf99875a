"""tools/demo/prepare_digit_scenes.py: the dense demo's COCO-style scenes of handwritten digits, checked with
pycocotools and against the classification demo's own split."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_fill_holes
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from conftest import REPO

TOOL = str(REPO / 'tools/demo/prepare_digit_scenes.py')


def prepare(out, *args):
    return subprocess.run([sys.executable, TOOL, str(out), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp('scenes') / 'digit_scenes'
    run = prepare(out, '--train', '30', '--val', '12', '--seed', '3')
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def digest(folder) -> str:
    files = sorted(p for p in folder.rglob('*') if p.is_file())
    return hashlib.sha256(b''.join(p.relative_to(folder).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


@pytest.mark.parametrize('split,count', [('train', 30), ('val', 12)])
def test_annotations_describe_the_ink_the_masks_hold(scenes, split, count):
    coco = COCO(str(scenes / 'annotations' / f'instances_{split}.json'))
    assert [coco.cats[i]['name'] for i in range(1, 11)] == [str(k) for k in range(10)]
    assert len(coco.imgs) == count and len(coco.anns) >= count
    for image_id, info in coco.imgs.items():
        pixels = np.asarray(Image.open(scenes / 'images' / split / info['file_name']))
        labels = np.asarray(Image.open(scenes / 'masks' / split / info['file_name']))
        assert pixels.shape == (info['height'], info['width'], 3) and labels.shape == pixels.shape[:2]
        assert info['height'] % 7 and info['width'] % 7  # never a multiple of the strides 7 and 14
        anns = coco.imgToAnns[image_id]
        assert 1 <= len(anns) <= 5
        covered = np.zeros(labels.shape, bool)
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= info['width'] and y + h <= info['height']
            assert max(w, h) <= 60 and ann['iscrowd'] == 0
            # The box is the tight box of this digit's pixels in the semantic mask (digits never overlap).
            own = np.zeros_like(covered)
            own[y:y + h, x:x + w] = labels[y:y + h, x:x + w] == ann['category_id']
            rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
            assert [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1] == [x, y, w, h]
            assert ann['area'] == own.sum()
            # The polygons, rasterised by pycocotools, cover this ink and the holes it encloses (COCO polygons
            # have no holes), and nothing else.
            segm = mask_utils.frPyObjects(ann['segmentation'], *labels.shape)
            polygon = mask_utils.decode(mask_utils.merge(segm)).astype(bool)
            filled = binary_fill_holes(own)
            assert (polygon & filled).sum() / (polygon | filled).sum() >= 0.98 and (polygon & own).sum() == own.sum()
            covered |= own
        assert set(np.unique(labels[~covered])) == {0}  # no label outside an annotated digit


def test_train_and_held_out_scenes_use_the_classification_demos_split(scenes, digits):
    """The digits pasted into held-out scenes are exactly among those prepare_digits.py holds out, and no training
    scene uses one of them."""
    used = {split: {ann['digit_index'] for ann in json.loads(
        (scenes / 'annotations' / f'instances_{split}.json').read_text())['annotations']} for split in ('train', 'val')}
    held_out = {int(p.stem) for p in digits.glob('val/*/*.png')}
    trained = {int(p.stem) for p in digits.glob('train/*/*.png')}
    assert used['val'] <= held_out and used['train'] <= trained and used['val'] and used['train']


def test_deterministic_by_seed_and_written_only_over_its_own_output(tmp_path, scenes):
    again = tmp_path / 'again'
    assert prepare(again, '--train', '30', '--val', '12', '--seed', '3').returncode == 0
    assert digest(again) == digest(scenes)
    assert prepare(again, '--train', '30', '--val', '12', '--seed', '4').returncode == 0  # replaces its own output
    assert digest(again) != digest(scenes)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    run = prepare(foreign, '--train', '2', '--val', '1')
    assert run.returncode == 2 and 'not written by this tool' in run.stderr
    assert [p.name for p in foreign.iterdir()] == ['notes.txt']
    assert prepare(tmp_path / 'x', '--train', '0').returncode == 2
