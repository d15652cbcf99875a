"""Parameter and FLOP counts of a DynaMixer classifier, for the tools in ``tools/analysis``.

FLOPs are mmengine's ``FlopAnalyzer`` counts (fvcore's convention: one multiply-add is one FLOP),
the convention of the paper's and the release's figures.
"""
import json
from typing import Union

import torch

from .models import DynaMixerNet, arch_zoo, resolve_arch


def parse_arch(text: str) -> Union[str, dict]:
    """An arch from the command line: a name in ``arch_zoo`` or a JSON object of an arch dict."""
    if text.lstrip().startswith('{'):
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f'arch {text!r} is not valid JSON: {error}') from None
        resolve_arch(arch)
        return arch
    if text.lower() not in arch_zoo:
        raise ValueError(f'Unknown DynaMixer arch {text!r}; allowed: {sorted(arch_zoo)} or a JSON arch dict')
    return text.lower()


def arch_label(arch: Union[str, dict]) -> str:
    """Short name of an arch for tables: 'S', 'M', 'L' or 'custom'."""
    return arch.upper() if isinstance(arch, str) else 'custom'


def complexity(arch: Union[str, dict], size: int = 224, num_classes: int = 1000) -> dict:
    """``params`` of the classifier and ``flops`` (multiply-adds) of one ``size`` x ``size`` image."""
    from mmengine.analysis import FlopAnalyzer

    model = DynaMixerNet(arch, num_classes=num_classes).eval()
    analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, size, size),))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return dict(params=sum(p.numel() for p in model.parameters()), flops=analyzer.total())
