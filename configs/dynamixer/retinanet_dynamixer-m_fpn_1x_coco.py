# RetinaNet with a DynaMixer-M backbone on COCO, 1x schedule. Everything but the backbone as in the S config.
# M's strides by stage are 7, 7, 14, 14 (256, 256, 512, 512 ch): the FPN reads stage 1 (the last at
# stride 7) and stage 3 (the last at stride 14), so the pyramid strides and anchors are S's.
_base_ = ['./retinanet_dynamixer-s_fpn_1x_coco.py']

pretrained = 'checkpoints/dynamixer-m_in1k.pth'
model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        out_indices=(1, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 512]))
