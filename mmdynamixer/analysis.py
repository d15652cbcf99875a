"""Parameter and FLOP counts of a DynaMixer classifier: the one count that ``tools/analysis`` reports.

FLOPs here are multiply-adds, the convention of mmengine's ``FlopAnalyzer`` (fvcore's) and of the paper's and the
release's figures (7.32 / 17.02 / 27.40 G for S / M / L at 224): linears, matmuls and convolutions count their
multiply-adds, a LayerNorm 5 per element, and elementwise ops, softmax, GELU and means nothing. Torch only: torch's
``FlopCounterMode`` (which counts 2 FLOPs per multiply-add, hence the halving) over the model's forward with oneDNN
off, so that every linear is an ``aten`` matmul the counter sees.
"""
import inspect
import math
from typing import Tuple, Union

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models import DynaMixerNet

# fvcore's (and FlopAnalyzer's) cost of a LayerNorm with an affine transform, per element.
LAYER_NORM_MACS_PER_ELEMENT = 5


def _layer_norm_flops(input_shape, *args, **kwargs) -> int:
    """FlopCounterMode's formula for ``native_layer_norm``, in its unit of 2 FLOPs per multiply-add."""
    return 2 * LAYER_NORM_MACS_PER_ELEMENT * math.prod(input_shape)


def _onednn_off():
    """oneDNN off, and only that (newer torch's ``flags`` would also set its TF32 switch, which warns on CPU
    builds; torch 2.1's takes ``enabled`` alone)."""
    keep = {name: None for name in ('deterministic', 'allow_tf32', 'fp32_precision')
            if name in inspect.signature(torch.backends.mkldnn.flags).parameters}
    return torch.backends.mkldnn.flags(enabled=False, **keep)


def complexity(arch: Union[str, dict], size: Tuple[int, int] = (224, 224), num_classes: int = 1000) -> dict:
    """``params`` of the classifier and ``flops``, its multiply-adds for one image of ``size`` (height, width)."""
    model = DynaMixerNet(arch, num_classes=num_classes).eval()
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.native_layer_norm: _layer_norm_flops})
    with torch.no_grad(), _onednn_off(), counter:
        model(torch.zeros(1, 3, *size))
    return dict(params=sum(p.numel() for p in model.parameters()), flops=counter.get_total_flops() // 2)
