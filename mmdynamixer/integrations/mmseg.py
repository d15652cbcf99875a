"""Semantic FPN's head for pyramids whose strides are not powers of two, registered in mmseg's ``MODELS``.

mmseg's ``FPNHead`` gives level i ``int(log2(stride_i) - log2(stride_0))`` conv + 2x-upsample steps. For
DynaMixer's strides 7, 14, 28, 56 the float differences are 1, 1.9999999999999996, 2.9999999999999996,
so ``int`` builds 1, 1, 1, 2 steps instead of 1, 1, 2, 3 (the missing 2x is then made up by one bilinear
resize, and the coarse levels lose their conv stages). ``StrideFPNHead`` takes the real strides and builds
the head from their exact power-of-two ratios, and crops each upsampled level to the finest grid where FPNHead
resizes it. Registered by ``import mmdynamixer`` when mmseg is installed.
"""
import math
from typing import Sequence

from mmseg.models.decode_heads import FPNHead
from mmseg.registry import MODELS


@MODELS.register_module()
class StrideFPNHead(FPNHead):
    """``FPNHead`` for strides that are power-of-two multiples of the first, e.g. (7, 14, 28, 56).

    Args:
        feature_strides (Sequence[int]): The real strides of the input maps, finest first.
        **kwargs: As for mmseg's ``FPNHead``.
    """

    def __init__(self, feature_strides: Sequence[int], **kwargs):
        first = feature_strides[0]
        steps = []
        for stride in feature_strides:
            ratio = stride / first
            step = round(math.log2(ratio)) if ratio > 0 else -1
            if step < 0 or 2 ** step != ratio:
                raise ValueError(f'StrideFPNHead needs strides that are power-of-two multiples of the first one, '
                                 f'finest first; got feature_strides={list(feature_strides)}')
            steps.append(step)
        # FPNHead reads the strides only to count each level's 2x steps: give it the exact ratios.
        super().__init__(feature_strides=[2 ** step for step in steps], **kwargs)
        self.feature_strides = list(feature_strides)

    def forward(self, inputs):
        """FPNHead's sum of the levels on the finest level's grid, each upsampled level cropped to that grid.
        FPNHead resizes it instead: a coarse level of a side that is not a multiple of its stride is rounded up, comes
        out of its 2x steps larger than the grid, and was squeezed onto it, off its pixels (by up to 42 px on
        ADE20K's 518 crops)."""
        x = self._transform_inputs(inputs)
        output = self.scale_heads[0](x[0])
        height, width = output.shape[2:]
        for i in range(1, len(self.feature_strides)):
            output = output + self.scale_heads[i](x[i])[:, :, :height, :width]
        return self.cls_seg(output)
