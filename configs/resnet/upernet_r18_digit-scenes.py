# The dense demo's baseline: upernet_dynamixer-tiny_digit-scenes.py (same data, schedule and head widths) with
# mmseg's plain ResNet-18 (the 7x7 stem of mmpretrain's ResNet-18, so that its digits classifier loads whole)
# instead of the DynaMixer, and what ResNet's strides need: mmseg's upernet_r50 layout, UPerHead straight on the four
# stages (strides 4-32, no FPN neck), the auxiliary head on stride 16, and inputs padded to multiples of 32. The same
# init policy as ours: the backbone starts from the ResNet-18 digits classifier (resnet18_2xb64_digits.py, published
# to `pretrained`); from scratch: --cfg-options model.backbone.init_cfg=None. BN (one process: no SyncBN).
_base_ = ['../dynamixer/upernet_dynamixer-tiny_digit-scenes.py']

pretrained = 'checkpoints/resnet18_digits.pth'
data_preprocessor = dict(size_divisor=32, test_cfg=dict(size_divisor=32))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=None,
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256, in_index=2))
