# The dense demo's baseline: retinanet_dynamixer-tiny_fpn_digit-scenes.py (same data, schedule, neck and head
# widths) with mmdet's ResNet-18 instead of the DynaMixer, and what ResNet's strides need: the FPN over its
# four stages (strides 4-32) from stride 8 up, as mmdet's retinanet_r50_fpn, and its anchors (strides 8-128,
# octave_base_scale 4: the same 32-512 px). The same init policy as ours: the backbone starts from the ResNet-18
# digits classifier (resnet18_2xb64_digits.py, mmpretrain's ResNet-18 trained as our digits classifier; its best
# checkpoint published to `pretrained`), whose keys mmdet's ResNet shares; from scratch:
# --cfg-options model.backbone.init_cfg=None. BN trained and no stage frozen either way, as nothing of ours is.
_base_ = ['../dynamixer/retinanet_dynamixer-tiny_fpn_digit-scenes.py']

pretrained = 'checkpoints/resnet18_digits.pth'
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, add_extra_convs='on_input'),
    bbox_head=dict(anchor_generator=dict(octave_base_scale=4, strides=[8, 16, 32, 64, 128])))
