"""What the command-line tools share: checks of their file arguments that stop with argparse's error, and the
writing of an output folder that never deletes what another program wrote."""
import argparse
import contextlib
import os.path as osp
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

# Written into every folder that write_folder_whole completes: only a folder holding it (or an empty one) is replaced.
OUTPUT_MARKER = '.mmdynamixer-output'


class FolderNotOursError(FileExistsError):
    """The output folder holds files that no mmdynamixer tool wrote, so a tool refuses to replace it."""


def check_inputs(parser: argparse.ArgumentParser, image: Optional[str] = None, config: Optional[str] = None,
                 checkpoint: Optional[str] = None) -> Optional[np.ndarray]:
    """``parser.error`` (exit 2) naming the first argument given that cannot be used: IMAGE or CONFIG not a
    file, CHECKPOINT not a PyTorch checkpoint, IMAGE not an image mmcv can read. Returns the image read (BGR),
    if one was given."""
    for name, path in (('IMAGE', image), ('CONFIG', config)):
        if path is not None and not osp.isfile(path):
            parser.error(f'{name} {path!r} is not a file')
    if checkpoint is not None:
        from .checkpoints import check_checkpoint_file
        try:
            check_checkpoint_file(checkpoint)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    if image is None:
        return None
    import mmcv
    pixels = mmcv.imread(image)
    if pixels is None:
        parser.error(f'IMAGE {image!r} is not an image mmcv can read')
    return pixels


def check_folder_replaceable(path: Path) -> None:
    """Raise :class:`FolderNotOursError` unless ``path`` is absent, an empty folder, or a folder holding
    :data:`OUTPUT_MARKER` (one that :func:`write_folder_whole` wrote)."""
    if not osp.lexists(path):
        return
    if path.is_dir() and (not any(path.iterdir()) or (path / OUTPUT_MARKER).is_file()):
        return
    what = 'is not a folder' if not path.is_dir() else f'is not empty and has no {OUTPUT_MARKER} file'
    raise FolderNotOursError(f'{path} {what}: it was not written by this tool, which replaces only its own output. '
                             f'Choose another folder, or remove {path} yourself if nothing in it is needed')


def new_folder_beside(final: Path, suffix: str) -> Path:
    """Create a folder with a unique hidden name beside ``final`` (on its filesystem, so that renaming it to ``final``
    is atomic) and the permissions of a plain mkdir (tempfile.mkdtemp's, 0700, would pass to the output)."""
    folder = final.parent / f'.{final.name}.{uuid.uuid4().hex[:12]}.{suffix}'
    folder.mkdir()
    return folder


def replace_folder(new: Path, final: Path) -> None:
    """Rename ``new`` to ``final``. An existing ``final`` is first moved into a temporary folder beside it, and
    deleted only once ``new`` is in its place (moved back if that rename fails)."""
    if not osp.lexists(final):
        new.rename(final)
        return
    aside = new_folder_beside(final, 'replaced')
    final.rename(aside / final.name)
    try:
        new.rename(final)
    except BaseException:
        (aside / final.name).rename(final)
        aside.rmdir()
        raise
    shutil.rmtree(aside)


@contextlib.contextmanager
def write_folder_whole(path) -> Iterator[Path]:
    """Give a new temporary folder beside ``path`` to write an output into; when the ``with`` body completes,
    mark it with :data:`OUTPUT_MARKER` and rename it to ``path``, so that ``path`` only ever holds a whole output.

    Refuses at once, with :class:`FolderNotOursError`, when ``path`` holds anything but an earlier output of a tool
    or an empty folder. An earlier output is replaced as :func:`replace_folder` does. When the body raises, the
    temporary folder is removed and ``path`` left as it was.
    """
    final = Path(path)
    check_folder_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = new_folder_beside(final, 'writing')
    try:
        yield temp
        (temp / OUTPUT_MARKER).write_text('Written whole by an mmdynamixer tool, which replaces this folder when '
                                          'run again on it.\n')
        check_folder_replaceable(final)  # again: another program may have written there meanwhile
        replace_folder(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
