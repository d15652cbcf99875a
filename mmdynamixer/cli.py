"""What the command-line tools share: one vocabulary of flags (``--arch``, ``--size H W``, ``--sizes HxW``,
``--precision``, ``--device``, deprecated aliases), checks of their file arguments that stop with argparse's error,
and the writing of an output folder that never deletes what another program wrote."""
import argparse
import contextlib
import json
import os.path as osp
import shutil
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # numpy only for the annotation: the torch-only tools (gpu_check) import this module
    import numpy

# Written into every folder that write_folder_whole completes: only a folder holding it (or an empty one) is replaced.
OUTPUT_MARKER = '.mmdynamixer-output'


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``: every tool's ``--device`` default."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, defaulting to :func:`default_device`."""
    parser.add_argument('--device', default=default_device(),
                        help='device to run on, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)')


def parse_arch(text: str) -> Union[str, dict]:
    """An arch from the command line: one of ``arch_zoo``'s names (s, m, l) or a JSON object of an arch dict."""
    from .models import arch_zoo, resolve_arch
    if text.lstrip().startswith('{'):
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f'arch {text!r} is not valid JSON: {error}') from None
        try:
            resolve_arch(arch)
        except (KeyError, ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(f'arch {text!r} is not a DynaMixer arch: {error}') from None
        return arch
    if text.lower() not in arch_zoo:
        raise argparse.ArgumentTypeError(
            f'unknown DynaMixer arch {text!r}; allowed: {", ".join(sorted(arch_zoo))} or a JSON arch dict')
    return text.lower()


def arch_label(arch: Union[str, dict]) -> str:
    """Short name of an arch for tables: 'S', 'M', 'L' or 'custom'."""
    return arch.upper() if isinstance(arch, str) else 'custom'


def add_arch_argument(parser: argparse.ArgumentParser, default: Sequence[str] = ('s',)) -> None:
    """``--arch``: one or more of s, m, l or JSON arch dicts (a list, even when one is given)."""
    parser.add_argument('--arch', nargs='+', type=parse_arch, default=[parse_arch(a) for a in default],
                        metavar='ARCH', help=f's, m, l or a JSON arch dict, one or more (default: {" ".join(default)})')


def require_release_size(parser: argparse.ArgumentParser, archs: Sequence[Union[str, dict]],
                         size: Tuple[int, int]) -> None:
    """``parser.error`` unless ``size`` is each arch's native size (7 x its first stage's resolution): the only size
    at which the release's forward (``mmdynamixer.release_reference``) runs, for the tools that compare with it."""
    from .models import resolve_arch
    for arch in archs:
        side = 7 * resolve_arch(arch)['resolutions'][0]
        if tuple(size) != (side, side):
            parser.error(f"--size {size[0]} {size[1]}: the release's forward of arch {arch_label(arch)} "
                         f'runs only at {side} {side}')


def parse_size(text: str) -> Tuple[int, int]:
    """``HxW`` (height first) as ``(H, W)``, both positive."""
    parts = text.lower().split('x')
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f'size {text!r} is not HEIGHTxWIDTH with positive integers, e.g. 800x1333')
    return int(parts[0]), int(parts[1])


def square_size(flag: str):
    """The ``type`` of an old one-number size flag (``--canvas N``): ``N`` as ``(N, N)``, the value ``--size N``
    stores; anything but a positive integer is refused naming ``flag``."""

    def parse(text: str) -> Tuple[int, int]:
        if not text.strip().isdigit() or int(text) <= 0:
            raise argparse.ArgumentTypeError(f'{flag} {text} is not a positive number of pixels')
        return int(text), int(text)

    return parse


class _SizeAction(argparse.Action):
    """Stores ``--size H W`` (or ``--size N``, a square) as ``(H, W)``."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) not in (1, 2) or min(values) <= 0:
            parser.error(f'{option_string} takes HEIGHT WIDTH (or one SIDE for a square) as positive integers, '
                         f'got {" ".join(map(str, values))}')
        setattr(namespace, self.dest, (values[0], values[-1]))


def add_size_argument(parser: argparse.ArgumentParser, default: Optional[Tuple[int, int]] = (224, 224),
                      help: str = 'input size') -> None:
    """``--size H W`` (height first; one value for a square), stored as ``(H, W)``. ``default=None``: the tool
    requires it (checking ``args.size is None`` itself, so that a deprecated alias may give it instead)."""
    shown = 'required' if default is None else f'default: {default[0]} {default[1]}'
    parser.add_argument('--size', nargs='+', type=int, action=_SizeAction, default=default and tuple(default),
                        metavar='PIXELS', help=f'{help}: HEIGHT WIDTH, or SIDE for a square ({shown})')


def add_sizes_argument(parser: argparse.ArgumentParser, default: Sequence[str], help: str = 'input sizes') -> None:
    """``--sizes HxW ...`` (height first), stored as a list of ``(H, W)``."""
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=[parse_size(s) for s in default],
                        metavar='HxW', help=f'{help}, HEIGHTxWIDTH each (default: {" ".join(default)})')


def add_precision_argument(parser: argparse.ArgumentParser, choices: Sequence[str],
                           default: Sequence[str] = ('fp32',)) -> None:
    """``--precision``: one or more of ``choices`` (a list, even when one is given)."""
    parser.add_argument('--precision', nargs='+', choices=list(choices), default=list(default),
                        help=f'one or more of {", ".join(choices)} (default: {" ".join(default)})')


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept the old flag ``old`` for one release: it stores into ``dest`` as ``new`` does and warns
    (FutureWarning, shown by default) that it will go. ``kwargs`` are ``add_argument``'s (``nargs``, ``type``)."""

    class DeprecatedAlias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warnings.warn(f'{old} is deprecated and will be removed in the next release; use {new}', FutureWarning,
                          stacklevel=2)
            setattr(namespace, dest, values)

    parser.add_argument(old, dest=dest, action=DeprecatedAlias, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                        **kwargs)


class FolderNotOursError(FileExistsError):
    """The output folder holds files that no mmdynamixer tool wrote, so a tool refuses to replace it."""


def check_inputs(parser: argparse.ArgumentParser, image: Optional[str] = None, config: Optional[str] = None,
                 checkpoint: Optional[str] = None) -> Optional['numpy.ndarray']:
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
