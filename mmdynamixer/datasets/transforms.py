"""Image loading that deals with unreadable files as configured, instead of failing deep in a worker."""
import logging
import os

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

UNREADABLE_POLICIES = ('skip', 'error')


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with a policy for files that cannot be read or decoded (missing,
    empty, truncated, not an image).

    Args:
        on_unreadable (str): ``'error'`` raises an error naming the file. ``'skip'`` logs a warning with
            the file and the number skipped so far by this process and returns None, so the training
            dataset (mmengine's ``BaseDataset``) draws another sample instead. A dataset in test mode
            cannot skip: ``DynaMixerRunner`` refuses that configuration.
        **kwargs: ``LoadImageFromFile``'s arguments, except ``ignore_empty`` (which skips silently).
    """

    def __init__(self, on_unreadable: str = 'error', **kwargs):
        if on_unreadable not in UNREADABLE_POLICIES:
            raise ValueError(f'on_unreadable={on_unreadable!r}; allowed: {UNREADABLE_POLICIES}')
        if kwargs.get('ignore_empty'):
            raise ValueError("ignore_empty=True skips unreadable images without a trace; use on_unreadable='skip'")
        super().__init__(**kwargs)
        self.on_unreadable = on_unreadable
        self.skipped = 0

    def transform(self, results: dict):
        if 'img_path' not in results and 'img' in results:
            # Loaded by the caller: the toolboxes' inferencers read the image themselves and drop only a leading
            # plain LoadImageFromFile from the test pipeline (mmpretrain's ImageClassificationInferencer).
            return results
        path = results['img_path']
        try:
            loaded = super().transform(results)
        except Exception as error:  # reading or decoding failed: the file is unreadable, whatever the cause
            reason = f'{type(error).__name__}: {error}'.splitlines()[0]
        else:
            return loaded
        if self.on_unreadable == 'error':
            raise OSError(f"Unreadable image {path} ({reason}). Replace or remove the file, or set "
                          f"on_unreadable='skip' in the training pipeline's {type(self).__name__} to skip such files.")
        self.skipped += 1
        print_log(f'Skipped unreadable image {path} ({reason}); {self.skipped} unreadable image(s) skipped so far '
                  f'by this data-loading process (pid {os.getpid()})', logger='current', level=logging.WARNING)
        return None
