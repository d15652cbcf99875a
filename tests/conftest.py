"""Fixtures shared by the tests. Helpers shared with the benchmarks live in ``mmdynamixer.testing``."""
import itertools
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

def _hand_count_params(arch: dict, num_classes: int) -> int:
    """Parameters of a DynaMixer classifier (final norm and head) counted from the release's definition."""
    dims = arch['embed_dims']
    count = 3 * 7 * 7 * dims[0] + dims[0]  # patch embedding: 7 x 7 convolution and its bias
    for i, dim in enumerate(dims):
        seq, heads, reduced, hidden = (arch['resolutions'][i], arch['num_segments'][i], arch['reduced_dims'][i],
                                       arch['mlp_ratios'][i] * dim)
        mixing = (dim * heads * reduced + heads * reduced  # compress
                  + seq * reduced * seq * seq + seq * seq  # generate
                  + dim * dim + dim)  # out
        layer = 2 * 2 * dim  # norm1, norm2
        layer += 2 * mixing  # along the height and along the width
        layer += dim * dim  # channel branch, no bias
        layer += dim * (dim // 4) + dim // 4 + (dim // 4) * 3 * dim + 3 * dim  # re-weighting MLP
        layer += dim * dim + dim  # proj
        layer += dim * hidden + hidden + hidden * dim + dim  # MLP
        count += arch['layers'][i] * layer
        if i + 1 < len(dims) and (arch['transitions'][i] or dims[i + 1] != dim):
            stride = 2 if arch['transitions'][i] else 1
            count += dim * dims[i + 1] * stride * stride + dims[i + 1]
    return count + 2 * dims[-1] + dims[-1] * num_classes + num_classes  # final norm, head


@pytest.fixture(scope='session')
def hand_count_params():
    """The hand count of a classifier's parameters: ``hand_count_params(arch, num_classes)``."""
    return _hand_count_params


# Seconds that each timed run of a step takes under ``scripted_timing``: median 0.25, fastest 0.125, mean 0.29;
# powers of two, so that the clock's sums and differences are exact.
SCRIPTED_SECONDS = (0.125, 0.5, 0.25)


def scripted_timing_patches() -> dict:
    """Replacements for :func:`mmdynamixer.benchmarking.alternate` and ``time_for`` under which the timed runs of a
    step take known seconds, so that a tool's rates can be checked against facts: every step still runs, and the
    clock, which moves only when a step runs, advances by the next of ``SCRIPTED_SECONDS`` (cycled, from the first,
    per step and per call). A tool run in a subprocess gets them with
    ``vars(mmdynamixer.benchmarking).update(conftest.scripted_timing_patches())``."""
    from mmdynamixer import benchmarking

    now = [0.0]

    def scripted(step):
        seconds = itertools.cycle(SCRIPTED_SECONDS)

        def run():
            result = step()
            now[0] += next(seconds)
            return result
        return run

    real_alternate, real_time_for = benchmarking.alternate, benchmarking.time_for

    def alternate(steps, device, warmup, repeat, clock=None):
        return real_alternate({name: scripted(step) for name, step in steps.items()}, device, warmup, repeat,
                              clock=lambda: now[0])

    def time_for(step, device, min_time, max_steps, min_steps=3, clock=None):
        return real_time_for(scripted(step), device, min_time, max_steps, min_steps, clock=lambda: now[0])

    return dict(alternate=alternate, time_for=time_for)


@pytest.fixture
def scripted_timing(monkeypatch):
    """``scripted_timing_patches`` in this process, for the test's duration; the scripted seconds."""
    from mmdynamixer import benchmarking

    for name, replacement in scripted_timing_patches().items():
        monkeypatch.setattr(benchmarking, name, replacement)
    return SCRIPTED_SECONDS


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
