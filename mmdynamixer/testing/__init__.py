"""What the tests and the benchmarks share: the release's reference forward (``release_reference``), small
models and generated data. Nothing here is needed to use the model."""
from .data import write_image_folder
from .models import TINY_ARCH, build_mmpretrain_model, perturbed

__all__ = ['TINY_ARCH', 'build_mmpretrain_model', 'perturbed', 'write_image_folder']
