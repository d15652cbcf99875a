# UperNet with a DynaMixer-M backbone on ADE20K, 512x512, 160k iterations. All but the backbone as in the S config.
# The backbone and the maps the FPN reads: ../_base_/models/dynamixer-m_dense.py.
_base_ = ['./upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py', '../_base_/models/dynamixer-m_dense.py']

pretrained = _base_.dynamixer_m_checkpoint
model = dict(backbone=_base_.dynamixer_m_backbone,
             neck=dict(in_channels=_base_.dynamixer_m_neck_in_channels))
