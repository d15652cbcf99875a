"""Image loading that deals with unreadable files as configured, instead of failing deep in a worker."""
import logging
import numbers
import os
import struct

import cv2
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS
from PIL import Image

UNREADABLE_POLICIES = ('skip', 'error')
# Failures to read a file (missing, permission, I/O; PIL's UnidentifiedImageError and "image file is truncated"
# are OSErrors too) or to decode it (cv2 on empty bytes, PIL on an image too large to be real).
READ_OR_DECODE_ERRORS = (OSError, cv2.error, Image.DecompressionBombError)
# What PIL's format parsers raise on malformed bytes besides OSError (e.g. SyntaxError('broken PNG file')); counted
# only when raised by PIL's own code, so that the same types raised by a bug elsewhere propagate.
PIL_FORMAT_ERRORS = (SyntaxError, ValueError, EOFError, struct.error)
# mmcv's LoadImageFromFile asserts this when cv2 returns None (bytes that are not an image, a truncated image).
CV2_NONE_MESSAGE = 'failed to load image'
# The limit (max_unreadable_fraction) applies from this many skipped images on: a few bad files among the first
# ones tried must not stop a run.
MIN_SKIPPED_FOR_LIMIT = 10
SKIPPED_EXAMPLES = 5


class TooManyUnreadableImagesError(RuntimeError):
    """More images were unreadable than ``max_unreadable_fraction`` allows: the data, not single files, is broken."""


def raised_by_pil(error: BaseException) -> bool:
    """Whether the innermost Python frame of ``error``'s traceback is in PIL."""
    innermost = error.__traceback__
    if innermost is None:
        return False
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    return innermost.tb_frame.f_globals.get('__name__', '').startswith('PIL.')


def is_unreadable_error(error: Exception) -> bool:
    """Whether ``error``, raised by ``LoadImageFromFile.transform``, is a failure to read or decode the file (as
    opposed to a bug or a misconfiguration, e.g. an unknown backend, which must not pass for a bad file)."""
    if isinstance(error, READ_OR_DECODE_ERRORS):
        return True
    if isinstance(error, AssertionError):
        return str(error).startswith(CV2_NONE_MESSAGE)
    return isinstance(error, PIL_FORMAT_ERRORS) and raised_by_pil(error)


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with a policy for files that cannot be read or decoded (missing, unreadable,
    empty, truncated, not an image), and a limit on how many may be skipped.

    Only failures to read or decode the file count as unreadable (see :func:`is_unreadable_error`); any other
    error (a bug, a misconfigured backend) propagates unchanged whatever the policy.

    Args:
        on_unreadable (str): ``'error'`` raises an OSError naming the file. ``'skip'`` logs a warning with
            the file and the number skipped so far by this process and returns None, so the training
            dataset (mmengine's ``BaseDataset``) draws another sample instead. A dataset in test mode
            cannot skip: ``DynaMixerRunner`` refuses that configuration.
        max_unreadable_fraction (float): with ``'skip'``, the largest fraction of the images this process tried to
            load that may be unreadable: once at least 10 were skipped and they are more than this fraction of those
            tried, :class:`TooManyUnreadableImagesError` stops the run, with the counts and the first files skipped
            (a wrong data root or a broken disk, not a few bad files). A number in [0, 1]; 1 never stops.
            Default 0.01.
        **kwargs: ``LoadImageFromFile``'s arguments, except ``ignore_empty`` (which skips silently).
    """

    def __init__(self, on_unreadable: str = 'error', max_unreadable_fraction: float = 0.01, **kwargs):
        if on_unreadable not in UNREADABLE_POLICIES:
            raise ValueError(f'on_unreadable={on_unreadable!r}; allowed: {UNREADABLE_POLICIES}')
        if (not isinstance(max_unreadable_fraction, numbers.Real) or isinstance(max_unreadable_fraction, bool)
                or not 0 <= max_unreadable_fraction <= 1):
            raise ValueError(f'max_unreadable_fraction={max_unreadable_fraction!r}; allowed: a number in [0, 1]')
        if kwargs.get('ignore_empty'):
            raise ValueError("ignore_empty=True skips unreadable images without a trace; use on_unreadable='skip'")
        super().__init__(**kwargs)
        self.on_unreadable = on_unreadable
        self.max_unreadable_fraction = max_unreadable_fraction
        self.tried = 0
        self.skipped = 0
        self.skipped_examples = []  # (path, reason) of the first SKIPPED_EXAMPLES images skipped

    def transform(self, results: dict):
        if 'img_path' not in results and 'img' in results:
            # Loaded by the caller: the toolboxes' inferencers read the image themselves and drop only a leading
            # plain LoadImageFromFile from the test pipeline (mmpretrain's ImageClassificationInferencer).
            return results
        path = results['img_path']
        self.tried += 1
        try:
            return super().transform(results)
        except Exception as error:
            if not is_unreadable_error(error):
                raise
            reason = f'{type(error).__name__}: {error}'.splitlines()[0]
        if self.on_unreadable == 'error':
            raise OSError(f"Unreadable image {path} ({reason}). Replace or remove the file, or set "
                          f"on_unreadable='skip' in the training pipeline's {type(self).__name__} to skip such files.")
        self.skipped += 1
        if len(self.skipped_examples) < SKIPPED_EXAMPLES:
            self.skipped_examples.append((path, reason))
        print_log(f'Skipped unreadable image {path} ({reason}); {self.skipped} unreadable image(s) skipped so far '
                  f'by this data-loading process (pid {os.getpid()})', logger='current', level=logging.WARNING)
        if self.skipped >= MIN_SKIPPED_FOR_LIMIT and self.skipped > self.max_unreadable_fraction * self.tried:
            examples = '; '.join(f'{example} ({why})' for example, why in self.skipped_examples)
            raise TooManyUnreadableImagesError(
                f'{self.skipped} of the {self.tried} images this data-loading process (pid {os.getpid()}) tried to '
                f'load were unreadable, more than max_unreadable_fraction={self.max_unreadable_fraction} allows '
                f'(checked from {MIN_SKIPPED_FOR_LIMIT} skipped images on). The first {len(self.skipped_examples)}: '
                f'{examples}. Check the data root and the files, or raise max_unreadable_fraction in the training '
                f"pipeline's {type(self).__name__} (1 never stops).")
        return None
