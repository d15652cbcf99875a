"""What the tests share: small models, generated data and running tools. Nothing here is needed to use the model
or by the tools; the release's reference forward, which the benchmarks run, is :mod:`mmdynamixer.release_reference`."""
from .data import write_image_folder
from .models import TINY_ARCH, build_mmpretrain_model, perturbed
from .tools import tool_env, upstream_tool

__all__ = ['TINY_ARCH', 'build_mmpretrain_model', 'perturbed', 'tool_env', 'upstream_tool', 'write_image_folder']
