"""Small models for tests and benchmarks."""
import torch

from ..benchmarking import TINY_ARCH, perturbed  # noqa: F401  (the tests' small model, shared with the tools)


def build_mmpretrain_model(cfg: dict) -> torch.nn.Module:
    """Build a model config in mmpretrain's scope (needs mmpretrain and ``import mmdynamixer``)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def logits_and_gradients(model: torch.nn.Module, images: torch.Tensor) -> list:
    """``model``'s logits for ``images``, then the gradients of the images and of every parameter for a loss that
    weighs each class differently: what two implementations of one model must agree on, forward and backward."""
    model.zero_grad()
    images = images.clone().requires_grad_()
    logits = model(images)
    (logits * torch.linspace(-1, 1, logits.shape[-1], device=logits.device)).sum().backward()
    return [logits.detach(), images.grad] + [parameter.grad for parameter in model.parameters()]
