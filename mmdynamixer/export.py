"""ONNX export of a module (images -> one or more tensors) checked in onnxruntime against eager PyTorch before the
file takes its name: the one export of ``tools/deployment/pytorch2onnx.py`` and ``benchmark.py --onnxruntime``.

torch's dynamo exporter traces the module at one input size. A *dynamic* graph has batch, height and width as
inputs (``Dim.DYNAMIC``): the model computes its padding and window counts in the graph, so one file is exact at
every size. A *static* graph accepts exactly the traced shape, and nothing else is checked on it. Named ``Dim`` s do
not work with this model (torch 2.14.1): ``torch.export.export`` refuses them, since its solver cannot prove the
guards on their declared ranges (e.g. on ``ceil(width / 7)``), and ``torch.onnx.export`` accepts them only by
retrying with the shapes that failure suggests. A dynamic graph is traced at a batch of at least 2: traced at 1,
the classifier's graph kept a 1 in a reshape.
"""
import contextlib
import os
import os.path as osp
import uuid
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.torch_version import TorchVersion

# torch.export.Dim.DYNAMIC and torch.onnx.export(dynamo=True, external_data=...) arrived in torch 2.6.
EXPORT_MIN_TORCH = '2.6'
INPUT_NAME = 'images'
Shape = Tuple[int, int, int]  # batch, height, width


@dataclass
class Difference:
    """The largest difference between onnxruntime's and eager's values of one output at one input shape;
    ``rel_diff`` is relative to the largest eager value."""
    shape: Shape
    output: str
    output_shape: Tuple[int, ...]
    abs_diff: float
    rel_diff: float


class ExportMismatch(RuntimeError):
    """onnxruntime's outputs differ from eager's beyond the tolerance: the file was not written."""

    def __init__(self, message: str, differences: List[Difference]):
        super().__init__(message)
        self.differences = differences


def require_export_support() -> None:
    """Refuse, naming the version, on a torch whose exporter lacks what :func:`export_onnx` and
    :func:`dynamic_shapes` use, instead of failing inside torch or exporting something else."""
    if TorchVersion(torch.__version__) < EXPORT_MIN_TORCH:
        raise RuntimeError(f'ONNX export and torch.export of DynaMixer need torch >= {EXPORT_MIN_TORCH} '
                           f'(torch.export.Dim.DYNAMIC, the dynamo ONNX exporter); this is torch {torch.__version__}')


def dynamic_shapes() -> tuple:
    """``dynamic_shapes`` for a module of one image batch: batch, height and width dynamic."""
    require_export_support()
    dynamic = torch.export.Dim.DYNAMIC
    return ({0: dynamic, 2: dynamic, 3: dynamic},)


def trace_batch(batch: int, dynamic: bool) -> int:
    """The batch to trace at: ``batch``, or at least 2 for a dynamic graph."""
    return max(batch, 2) if dynamic else batch


def onnxruntime_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session of ``path``, with ``threads`` intra-op threads (default: onnxruntime's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def compare(session, module: nn.Module, output_names: Sequence[str], shapes: Sequence[Shape]) -> List[Difference]:
    """Run ``session`` and eager ``module`` on the same random images of each shape; raises ValueError when the
    two give another number of outputs than ``output_names`` names, or an output's shape differs."""
    gen = torch.Generator().manual_seed(0)
    differences = []
    for batch, height, width in shapes:
        images = torch.randn(batch, 3, height, width, generator=gen)
        with torch.no_grad():
            expected = module(images)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        actual = session.run(None, {INPUT_NAME: images.numpy()})
        if not len(actual) == len(expected) == len(output_names):
            raise ValueError(f'{batch}x3x{height}x{width}: onnxruntime gives {len(actual)} output(s), eager '
                             f'{len(expected)}, and output_names names {len(output_names)} ({list(output_names)}): '
                             f'each output must be compared')
        for name, ours, theirs in zip(output_names, actual, expected):
            if tuple(ours.shape) != tuple(theirs.shape):
                raise ValueError(f'{batch}x3x{height}x{width}: output {name} has shape {tuple(ours.shape)} in '
                                 f'onnxruntime, {tuple(theirs.shape)} in eager')
            abs_diff = (torch.from_numpy(ours) - theirs).abs().max().item()
            differences.append(Difference((batch, height, width), name, tuple(ours.shape), abs_diff,
                                          abs_diff / max(theirs.abs().max().item(), 1e-12)))
    return differences


def export_onnx(module: nn.Module, path: str, size: Tuple[int, int], batch: int = 1, dynamic: bool = False,
                output_names: Sequence[str] = ('output',), check_shapes: Sequence[Shape] = (), rtol: float = 1e-4,
                opset: Optional[int] = None) -> List[Difference]:
    """Export ``module`` (eval mode) traced at ``size`` (height, width) to ``path`` and return how onnxruntime's
    outputs differ from eager's at the traced shape and each of ``check_shapes`` (a dynamic graph also at batch + 1).

    The file is written beside ``path`` under a temporary name, with its weights inside (``external_data=False``:
    far below ONNX's 2 GB limit, and then the rename is the whole write), and renamed to ``path`` only when every
    relative difference is within ``rtol``; otherwise :class:`ExportMismatch` is raised and ``path`` left as it
    was. A static graph refuses ``check_shapes`` other than the traced one (ValueError), since onnxruntime would.
    """
    require_export_support()
    traced = (trace_batch(batch, dynamic), *size)
    if min(traced) < 1:
        raise ValueError(f'batch and size must be positive, got batch {batch}, size {size[0]}x{size[1]}')
    if not dynamic and any(tuple(s) != (batch, *size) for s in check_shapes):
        raise ValueError(f'a static graph accepts only {batch}x3x{size[0]}x{size[1]}; check shapes '
                         f'{[tuple(s) for s in check_shapes]} need a dynamic graph')
    shapes = [(batch, *size)] + ([(batch + 1, *size)] if dynamic else [])
    shapes += [tuple(s) for s in check_shapes if tuple(s) not in shapes]
    module = module.eval()
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    candidate = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.onnx')
    try:
        torch.onnx.export(module, (torch.randn(traced[0], 3, *size),), candidate, dynamo=True,
                          external_data=False, dynamic_shapes=dynamic_shapes() if dynamic else None,
                          input_names=[INPUT_NAME], output_names=list(output_names), opset_version=opset,
                          verbose=False)
        differences = compare(onnxruntime_session(candidate), module, output_names, shapes)
        worst = max(d.rel_diff for d in differences)
        if worst > rtol:
            raise ExportMismatch(f'onnxruntime differs from eager by {worst:.2e} (relative) > rtol {rtol:.0e}; '
                                 f'{path} not written', differences)
        os.replace(candidate, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(candidate)
    return differences
