"""Small models for tests and benchmarks."""
import torch

from ..benchmarking import TINY_ARCH, perturbed  # noqa: F401  (the tests' small model, shared with the tools)


def build_mmpretrain_model(cfg: dict) -> torch.nn.Module:
    """Build a model config in mmpretrain's scope (needs mmpretrain and ``import mmdynamixer``)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)
