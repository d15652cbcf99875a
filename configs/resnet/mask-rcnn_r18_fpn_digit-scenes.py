# The dense demo's baseline: mask-rcnn_dynamixer-tiny_fpn_digit-scenes.py (same data, schedule, neck and head
# widths) with mmdet's ResNet-18 instead of the DynaMixer, and what ResNet's strides need: mmdet's mask-rcnn_r50_fpn
# pyramid (FPN over strides 4-32 plus a max-pooled stride 64), its RPN anchors (scale 8 at strides 4-64: the same
# 32-512 px) and RoI strides 4-32. The same init policy as ours: the backbone starts from the ResNet-18 digits
# classifier (resnet18_2xb64_digits.py, published to `pretrained`); from scratch:
# --cfg-options model.backbone.init_cfg=None. BN trained and no stage frozen either way, as nothing of ours is.
_base_ = ['../dynamixer/mask-rcnn_dynamixer-tiny_fpn_digit-scenes.py']

pretrained = 'checkpoints/resnet18_digits.pth'
roi_strides = [4, 8, 16, 32]
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
    neck=dict(_delete_=True, type='FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=5),
    rpn_head=dict(anchor_generator=dict(scales=[8], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=roi_strides),
        mask_roi_extractor=dict(featmap_strides=roi_strides)))
