"""CheckedLoadImageFromFile: only files that cannot be read or decoded count as unreadable (with both of mmcv's
decode backends), any other error propagates, and skipping stops once too many images are unreadable."""
import math
import re
import shutil
import struct
import zlib

import mmcv
import pytest

from mmdynamixer.datasets import CheckedLoadImageFromFile
from mmdynamixer.datasets.transforms import TooManyUnreadableImagesError
from mmdynamixer.testing import write_image_folder


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_with_broken_chunk(png: bytes) -> bytes:
    """``png`` with its image data cut in half and followed by a chunk header PIL rejects with a SyntaxError."""
    start = png.index(b'IDAT') - 4
    (length,) = struct.unpack('>I', png[start:start + 4])
    return png[:start] + png_chunk(b'IDAT', png[start + 8:start + 8 + length // 2]) + b'\0' * 12


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> dict:
    """A good JPEG, and broken files: garbage, empty, a truncated JPEG, a PNG with a broken chunk, a missing file."""
    root = write_image_folder(tmp_path_factory.mktemp('images'), num_classes=1, per_class=1)
    good = next(root.glob('train/*/*.JPEG'))
    folder = good.parent
    jpeg = good.read_bytes()
    png_path = folder / 'good.png'
    mmcv.imwrite(mmcv.imread(str(good)), str(png_path))
    broken = {'garbage.JPEG': b'this is not an image' * 10, 'empty.JPEG': b'', 'truncated.JPEG': jpeg[:len(jpeg) // 2],
              'broken_chunk.png': png_with_broken_chunk(png_path.read_bytes())}
    for name, data in broken.items():
        (folder / name).write_bytes(data)
    return dict(good=good, broken=[folder / name for name in broken] + [folder / 'missing.JPEG'])


def load_all(load: CheckedLoadImageFromFile, paths: list) -> list:
    return [load(dict(img_path=str(path))) for path in paths]


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_broken_files_are_unreadable_with_both_decoders(images, backend):
    skip = CheckedLoadImageFromFile(on_unreadable='skip', imdecode_backend=backend)
    assert load_all(skip, images['broken']) == [None] * len(images['broken'])
    assert skip.skipped == len(images['broken'])
    assert load_all(skip, [images['good']])[0]['img'].shape == (56, 56, 3)
    stop = CheckedLoadImageFromFile(on_unreadable='error', imdecode_backend=backend)
    for path in images['broken']:
        with pytest.raises(OSError, match=rf'Unreadable image {re.escape(str(path))} \(\w+'):
            stop(dict(img_path=str(path)))


def raise_error(error: Exception):
    def imfrombytes(*args, **kwargs):
        raise error
    return imfrombytes


@pytest.mark.parametrize('error', [TypeError('a bug'), KeyError('a bug'), ValueError('a bug outside PIL'),
                                   AssertionError('an assertion of a bug')])
def test_other_errors_propagate_in_skip_mode(images, monkeypatch, error):
    monkeypatch.setattr(mmcv, 'imfrombytes', raise_error(error))
    load = CheckedLoadImageFromFile(on_unreadable='skip')
    with pytest.raises(type(error)) as raised:
        load(dict(img_path=str(images['good'])))
    assert raised.value is error and load.skipped == 0


def test_misconfigured_backend_propagates_in_skip_mode(images):
    load = CheckedLoadImageFromFile(on_unreadable='skip', backend_args=dict(backend='no_such_backend'))
    with pytest.raises(KeyError, match='no_such_backend'):  # mmengine's registry of file backends
        load(dict(img_path=str(images['good'])))
    assert load.skipped == 0


def test_too_many_unreadable_images_stop_skipping(images, tmp_path):
    broken = [tmp_path / f'{i:02d}_{images["broken"][i % 4].name}' for i in range(20)]  # 20 files, 4 kinds
    for i, path in enumerate(broken):
        shutil.copy(images['broken'][i % 4], path)
    paths = [path for pair in zip(broken, [images['good']] * 20) for path in pair] + [images['good']] * 10
    load = CheckedLoadImageFromFile(on_unreadable='skip')
    with pytest.raises(TooManyUnreadableImagesError) as raised:
        load_all(load, paths)
    message = str(raised.value)
    assert re.match(r'10 of the 19 images this data-loading process \(pid \d+\) tried to load were unreadable, more '
                    r'than max_unreadable_fraction=0.01 allows \(checked from 10 skipped images on\)\. The first 5: ',
                    message)
    first_five = '; '.join(rf'{re.escape(str(path))} \(\w+: [^;]+\)' for path in broken[:5])
    assert re.search(rf'The first 5: {first_five}\. Check the data root', message)
    assert str(broken[5]) not in message
    assert message.endswith("raise max_unreadable_fraction in the training pipeline's CheckedLoadImageFromFile "
                            '(1 never stops).')


def test_unreadable_images_within_the_limit_are_skipped(images):
    few = CheckedLoadImageFromFile(on_unreadable='skip')
    load_all(few, images['broken'][:3] + [images['good']] * 300)
    assert (few.skipped, few.tried) == (3, 303)
    # 12 of 1200 is the limit itself; one more unreadable image exceeds it.
    at_limit = CheckedLoadImageFromFile(on_unreadable='skip')
    load_all(at_limit, [images['good']] * 1188 + [images['broken'][0]] * 12)
    with pytest.raises(TooManyUnreadableImagesError, match='13 of the 1201 images'):
        load_all(at_limit, [images['broken'][0]])
    never = CheckedLoadImageFromFile(on_unreadable='skip', max_unreadable_fraction=1)
    assert load_all(never, images['broken'] * 4) == [None] * (4 * len(images['broken']))


@pytest.mark.parametrize('value', [-0.1, 1.5, math.nan, '0.1', True, None])
def test_max_unreadable_fraction_values(value):
    with pytest.raises(ValueError, match=rf'max_unreadable_fraction={re.escape(repr(value))}; allowed: a number in '
                                         r'\[0, 1\]'):
        CheckedLoadImageFromFile(on_unreadable='skip', max_unreadable_fraction=value)
