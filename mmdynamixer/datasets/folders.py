"""Image-folder datasets that check their folder before scanning it: ``CheckedImageNet`` and ``CheckedCustomDataset``.

mmpretrain's own messages for a folder that cannot give samples are a bare ``FileNotFoundError`` of the path, an
assertion on the number of sub-folders, or a count of zero files. These subclasses check the folder that
mmpretrain resolved (ImageNet's split and ``meta/`` logic included) when it is scanned, i.e. when there is no
``ann_file``, in the main process while the Runner builds the dataloader, and name the folder and the layout.
"""
from typing import Iterator

from mmengine.fileio import get_file_backend
from mmpretrain.datasets import CustomDataset, ImageNet
from mmpretrain.registry import DATASETS

EXPECTED_LAYOUT = ('a folder with one sub-folder per class holding the images, or an ann_file listing the images '
                   '(for ImageNet: meta/<split>.txt under data_root, picked up when it exists)')


def check_image_folder(dataset) -> None:
    """Raise if the folder a CustomDataset (or ImageNet) is about to scan cannot give samples: missing,
    not a folder, no class sub-folders, another number of class sub-folders than the dataset's classes,
    or no file with an image extension. The messages name the folder and the expected layout."""
    name = type(dataset).__name__
    root = dataset.img_prefix
    where = f'{name} image folder {root!r} (data_root={dataset.data_root!r})'
    backend = get_file_backend(root, enable_singleton=True)
    if not backend.isdir(root):
        state = 'is not a folder' if backend.exists(root) else 'does not exist'
        raise FileNotFoundError(f'{where} {state}; expected {EXPECTED_LAYOUT}')
    if dataset.with_label:
        classes = sorted(backend.list_dir_or_file(root, list_dir=True, list_file=False))
        if not classes:
            raise ValueError(f'{where} has no class sub-folders; expected {EXPECTED_LAYOUT}')
        expected = dataset.CLASSES
        if expected is not None and len(expected) != len(classes):
            shown = ', '.join(classes[:5]) + (', ...' if len(classes) > 5 else '')
            raise ValueError(f'{where} has {len(classes)} class sub-folders ({shown}) but {name} has '
                             f'{len(expected)} classes; give it one sub-folder per class, or set the dataset\'s '
                             f'classes (metainfo=dict(classes=[...])) to the {len(classes)} classes of the folder')
        folders = [backend.join_path(root, folder) for folder in classes]
    else:
        folders = [root]
    if not any(dataset.is_valid_file(file) for folder in folders for file in _files(backend, folder)):
        raise ValueError(f'{where} holds no image: no file with an extension in {sorted(dataset.extensions)}; '
                         f'expected {EXPECTED_LAYOUT}')


def _files(backend, folder: str) -> Iterator[str]:
    return backend.list_dir_or_file(folder, list_dir=False, list_file=True, recursive=True)


class _ChecksFolder:
    """Mixin: :func:`check_image_folder` before a folder scan."""

    def load_data_list(self):
        if not self.ann_file:
            check_image_folder(self)
        return super().load_data_list()


@DATASETS.register_module()
class CheckedCustomDataset(_ChecksFolder, CustomDataset):
    """mmpretrain's ``CustomDataset`` (same arguments) with :func:`check_image_folder` before a folder scan."""


@DATASETS.register_module()
class CheckedImageNet(_ChecksFolder, ImageNet):
    """mmpretrain's ``ImageNet`` (same arguments) with :func:`check_image_folder` before a folder scan."""
