# RetinaNet with a DynaMixer-L backbone on COCO, 1x schedule. Everything but the backbone as in the S config.
# The backbone and the maps the FPN reads: ../_base_/models/dynamixer-l_dense.py.
_base_ = ['./retinanet_dynamixer-s_fpn_1x_coco.py', '../_base_/models/dynamixer-l_dense.py']

pretrained = _base_.dynamixer_l_checkpoint
model = dict(backbone=_base_.dynamixer_l_backbone,
             neck=dict(in_channels=_base_.dynamixer_l_neck_in_channels))
