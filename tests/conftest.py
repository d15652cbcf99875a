"""Fixtures shared by the tests. Helpers shared with the benchmarks live in ``mmdynamixer.testing``."""
import subprocess
import sys
from pathlib import Path

import pytest

from mmdynamixer.testing import write_image_folder

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line('markers', 'stack: also run in the floor and ceiling stacks (tools/run_tests.sh): '
                                       'what must hold from the oldest to the newest torch we support')


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



def _hand_count_macs(arch: dict, height: int, width: int, num_classes: int) -> int:
    """Multiply-adds of a DynaMixer classifier's forward counted from the release's definition, for input sizes
    whose token counts are multiples of each stage's L (no padding), in FlopAnalyzer's convention (LayerNorm 5 per
    element; elementwise ops, softmax, GELU and means free)."""
    h, w = -(-height // 7), -(-width // 7)
    dims = arch['embed_dims']
    macs = h * w * dims[0] * 3 * 7 * 7  # patch embedding, 7 x 7 convolution
    for i, dim in enumerate(dims):
        seq, heads, reduced = arch['resolutions'][i], arch['num_segments'][i], arch['reduced_dims'][i]
        tokens = h * w
        layer = 2 * 5 * tokens * dim  # norm1, norm2
        for length, across in ((h, w), (w, h)):  # mixing along the height, then along the width
            windows = across * length // seq
            layer += tokens * dim * heads * reduced  # compress
            layer += windows * heads * (seq * reduced) * (seq * seq)  # generate: the mixing matrices
            layer += windows * dim * seq * seq  # the tokens times their mixing matrices
            layer += tokens * dim * dim  # out
        layer += tokens * dim * dim  # channel branch
        layer += dim * (dim // 4) + (dim // 4) * 3 * dim  # re-weighting MLP on the pooled features
        layer += tokens * dim * dim  # proj
        layer += 2 * tokens * dim * arch['mlp_ratios'][i] * dim  # MLP
        macs += arch['layers'][i] * layer
        if i + 1 < len(dims) and (arch['transitions'][i] or dims[i + 1] != dim):
            stride = 2 if arch['transitions'][i] else 1
            h, w = -(-h // stride), -(-w // stride)
            macs += h * w * dims[i + 1] * dim * stride * stride
    return macs + 5 * h * w * dims[-1] + dims[-1] * num_classes  # final norm, head


@pytest.fixture(scope='session')
def hand_count_macs():
    """The hand count of a classifier's multiply-adds: ``hand_count_macs(arch, height, width, num_classes)``."""
    return _hand_count_macs

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
