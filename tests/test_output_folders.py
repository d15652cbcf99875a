"""The tools delete only what they wrote: an output folder is written whole beside its place and renamed into it
(mmdynamixer.cli.write_folder_whole), replacing only an empty folder or an earlier output of a tool; a folder
holding anything else is refused before any work, and a failed write leaves the existing folder as it was."""
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmdynamixer.cli import OUTPUT_MARKER, FolderNotOursError, write_folder_whole


def prepare_digits(repo: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, 'tools/demo/prepare_digits.py', str(out)], cwd=repo,
                          capture_output=True, text=True)


def files_under(folder: Path) -> dict:
    """Every file under ``folder``, hidden ones included: relative path -> content."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob('*') if path.is_file()}


def test_refuses_a_folder_it_did_not_write(tmp_path, repo):
    data = tmp_path / 'data'
    (data / 'imagenet/train/n01440764').mkdir(parents=True)
    (data / 'imagenet/train/n01440764/x.JPEG').write_bytes(b'\xff\xd8 an image')
    (data / 'notes.txt').write_text('keep me')
    before = files_under(data)
    result = prepare_digits(repo, data)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'prepare_digits.py: error: {data} is not empty and has no {OUTPUT_MARKER} file: it was not written by this '
        f'tool, which replaces only its own output. Choose another folder, or remove {data} yourself if nothing in '
        f'it is needed')
    with pytest.raises(FolderNotOursError, match=rf'{re.escape(str(data / "notes.txt"))} is not a folder: it was '
                                                 r'not written by this tool'):
        with write_folder_whole(data / 'notes.txt'):
            pytest.fail('the body ran although the folder was refused')
    assert files_under(data) == before
    assert [path.name for path in tmp_path.iterdir()] == ['data']


def test_writes_a_fresh_folder(digits):
    """The session's digits, written by the tool to a path that did not exist."""
    assert len(list(digits.glob('train/*/*.png'))) == 1438 and len(list(digits.glob('val/*/*.png'))) == 359
    assert sorted(path.name for path in digits.iterdir()) == [OUTPUT_MARKER, 'train', 'val']
    assert not list(digits.parent.glob('.digits.*'))  # no temporary folder left beside it


def test_replaces_its_own_output(tmp_path, repo, digits):
    out = tmp_path / 'digits'
    shutil.copytree(digits, out)
    (out / 'notes.txt').write_text('added to the output')
    result = prepare_digits(repo, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'wrote 1438 training and 359 held-out images under {out}'
    assert len(list(out.glob('train/*/*.png'))) == 1438 and len(list(out.glob('val/*/*.png'))) == 359
    assert sorted(path.name for path in out.iterdir()) == [OUTPUT_MARKER, 'train', 'val']  # replaced whole
    assert [path.name for path in tmp_path.iterdir()] == ['digits']  # no temporary folder left beside it


def test_accepts_an_empty_folder(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    with write_folder_whole(out) as folder:
        assert folder.parent == tmp_path and folder != out
        (folder / 'result.txt').write_text('done')
    assert files_under(out).keys() == {OUTPUT_MARKER, 'result.txt'}
    assert [path.name for path in tmp_path.iterdir()] == ['out']


def test_failed_write_leaves_the_existing_output(tmp_path):
    out = tmp_path / 'out'
    with write_folder_whole(out) as folder:
        (folder / 'result.txt').write_text('first')
    before = files_under(out)
    with pytest.raises(RuntimeError, match='disk full'):
        with write_folder_whole(out) as folder:
            (folder / 'result.txt').write_text('second, cut short')
            raise RuntimeError('disk full')
    assert files_under(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ['out']


def test_failed_onnx_check_leaves_the_existing_file(tmp_path, repo, monkeypatch):
    """pytorch2onnx.py exports beside --out-file and renames the file into place only once onnxruntime agrees."""
    from mmdynamixer import export
    spec = importlib.util.spec_from_file_location('pytorch2onnx', repo / 'tools/deployment/pytorch2onnx.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    disagrees = [export.Difference((1, 3, 56, 56), 'logits', (1, 10), abs_diff=1.0, rel_diff=1.0)]
    monkeypatch.setattr(export, 'compare', lambda *args: disagrees)  # onnxruntime disagrees with eager
    out = tmp_path / 'digits.onnx'
    out.write_bytes(b'an earlier export')
    with pytest.raises(SystemExit, match='1'):
        tool.main([str(repo / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'), '--out-file', str(out),
                   '--size', '56', '56'])
    assert out.read_bytes() == b'an earlier export'
    assert [path.name for path in tmp_path.iterdir()] == ['digits.onnx']
