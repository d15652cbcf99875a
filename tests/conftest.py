"""Fixtures shared by the tests. Helpers shared with the benchmarks live in ``mmdynamixer.testing``."""
import subprocess
import sys
from pathlib import Path

import pytest

from mmdynamixer.testing import write_image_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@pytest.fixture(scope='session')
def tiny_imagenet(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp('imagenet'))


@pytest.fixture(scope='session')
def digits(tmp_path_factory) -> Path:
    """scikit-learn's digits written by the demo's own tool, as ``<tmp>/data/digits`` (the digits config's
    data_root is ``data/digits``, relative to the working directory)."""
    cwd = tmp_path_factory.mktemp('digits_run')
    subprocess.run([sys.executable, str(REPO / 'tools/demo/prepare_digits.py'), str(cwd / 'data/digits')],
                   check=True, capture_output=True)
    return cwd / 'data/digits'
