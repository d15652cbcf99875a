# The tiny DynaMixer of the demos: the S layout (transition after stage 1, 2 reduced dims) scaled down to a few CPU
# minutes. On the digits' 56x56 images: 8x8 tokens after the 7x7 patches, 4x4 after the transition. The digits
# classifier (dynamixer/dynamixer-tiny_2xb64_digits.py) trains it; the digit-scenes configs start from its weights.
#
# A variable, not `model`: a config that inherits a model from another base (mmengine refuses a key two bases
# define) takes it as  model = dict(backbone=dict(arch=dict(_delete_=True, **_base_.dynamixer_tiny_arch)))
dynamixer_tiny_arch = dict(
    layers=[1, 1, 2, 1],
    embed_dims=[32, 64, 64, 64],
    resolutions=[8, 4, 4, 4],
    num_segments=[4, 8, 8, 8],
    reduced_dims=[2, 2, 2, 2],
    transitions=[True, False, False, False],
    mlp_ratios=[3, 3, 3, 3])
