# Mask R-CNN with a DynaMixer-M backbone on COCO, 1x schedule. Everything but the backbone as in the S config.
# The backbone and the maps the FPN reads: ../_base_/models/dynamixer-m_dense.py.
_base_ = ['./mask-rcnn_dynamixer-s_fpn_1x_coco.py', '../_base_/models/dynamixer-m_dense.py']

pretrained = _base_.dynamixer_m_checkpoint
model = dict(backbone=_base_.dynamixer_m_backbone,
             neck=dict(in_channels=_base_.dynamixer_m_neck_in_channels))
