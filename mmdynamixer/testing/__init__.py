"""What the tests and the benchmarks share: the release's reference forward (``release_reference``), small
models, generated data and running tools. Nothing here is needed to use the model."""
from .data import write_image_folder
from .models import TINY_ARCH, build_mmpretrain_model, perturbed
from .tools import tool_env, upstream_tool

__all__ = ['TINY_ARCH', 'build_mmpretrain_model', 'perturbed', 'tool_env', 'upstream_tool', 'write_image_folder']
