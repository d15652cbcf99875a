"""Small models for tests and benchmarks."""
import torch

# A DynaMixer with S's layout (transition after stage 1) at 56 x 56 (8 x 8 tokens, then 4 x 4), milliseconds a step.
TINY_ARCH = dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 32], resolutions=[8, 4, 4, 4],
                 num_segments=[2, 4, 4, 4], reduced_dims=[2, 2, 2, 2],
                 transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3])


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value so zero biases and unit norms hide no bug; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def build_mmpretrain_model(cfg: dict) -> torch.nn.Module:
    """Build a model config in mmpretrain's scope (needs mmpretrain and ``import mmdynamixer``)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)
