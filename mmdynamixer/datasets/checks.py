"""Checks of the dataset configuration that fail with a clear message before any training starts."""
import functools
from typing import Iterator

from mmengine.fileio import get_file_backend

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


def _check_before_scanning(find_samples):
    @functools.wraps(find_samples)
    def wrapper(self):
        check_image_folder(self)
        return find_samples(self)

    wrapper.checks_folder = True
    return wrapper


def check_image_folders_when_scanned() -> None:
    """Run :func:`check_image_folder` whenever mmpretrain's CustomDataset (and so ImageNet) scans a folder,
    i.e. has no ann_file. mmpretrain's own messages for these cases are a bare FileNotFoundError of the
    path, an assertion on the number of sub-folders, or a count of zero files. Checking at the scan, in
    the main process while the Runner builds the dataloader, covers exactly the datasets a run uses, with
    the folder mmpretrain resolved (ImageNet's split and meta/ file logic included). Idempotent."""
    from mmpretrain.datasets import CustomDataset

    if not getattr(CustomDataset._find_samples, 'checks_folder', False):
        CustomDataset._find_samples = _check_before_scanning(CustomDataset._find_samples)


def _datasets(dataset_cfg) -> Iterator[dict]:
    """A dataset config and the configs it wraps (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset_cfg, dict):
        return
    yield dataset_cfg
    yield from _datasets(dataset_cfg.get('dataset'))
    for inner in dataset_cfg.get('datasets') or []:
        yield from _datasets(inner)


def check_unreadable_policies(cfg) -> None:
    """A dataset in test mode cannot skip a sample (mmengine fails with 'Test time pipline should not get
    `None` data_sample'): refuse ``on_unreadable='skip'`` there, naming the dataloader."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            if not dataset.get('test_mode'):
                continue
            for transform in dataset.get('pipeline') or []:
                if isinstance(transform, dict) and transform.get('on_unreadable') == 'skip':
                    raise ValueError(f"{loader}: {transform['type']} has on_unreadable='skip' in a dataset with "
                                     f"test_mode=True, which cannot skip a sample; use on_unreadable='error' there")
