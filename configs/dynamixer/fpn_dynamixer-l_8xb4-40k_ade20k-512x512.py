# Semantic FPN with a DynaMixer-L backbone on ADE20K, 512x512, 40k iterations. All but the backbone as in the S config.
# L's strides by stage are 7, 14, 14, 14 (256, 512, 512, 512 ch): the FPN neck reads stages 0 and 3.
_base_ = ['./fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py']

pretrained = 'checkpoints/dynamixer-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.3,
        out_indices=(0, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 512]))
