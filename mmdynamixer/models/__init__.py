"""The DynaMixer model in plain PyTorch: the mixing op, the block and the network."""
from .block import DynaMixerBlock, DynaMixerLayer
from .dynamixer import ARCH_KEYS, DynaMixerNet, arch_zoo, resolve_arch, resolve_out_indices
from .mixing import DynaMixerOp

__all__ = ['ARCH_KEYS', 'DynaMixerBlock', 'DynaMixerLayer', 'DynaMixerNet', 'DynaMixerOp', 'arch_zoo', 'resolve_arch',
           'resolve_out_indices']
