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


# A test may skip only for a condition of the machine, its reason starting with this (e.g. 'machine: has a CUDA
# GPU'); any other skip, such as a package of the tested stack that fails to import, fails the run.
MACHINE_CONDITION = 'machine: '


def _fail_undeclared_skip(report, what: str) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix('Skipped: ')
        if not reason.startswith(MACHINE_CONDITION):
            report.outcome = 'failed'
            report.longrepr = (f'{what} skipped for {reason!r}, which is not a condition of the machine: only skips '
                               f'whose reason starts with {MACHINE_CONDITION!r} are allowed')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _fail_undeclared_skip((yield).get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    _fail_undeclared_skip((yield).get_result(), collector.nodeid)  # a module-level importorskip
