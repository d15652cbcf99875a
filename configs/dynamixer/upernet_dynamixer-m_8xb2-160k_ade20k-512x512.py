# UperNet with a DynaMixer-M backbone on ADE20K, 512x512, 160k iterations. All but the backbone as in the S config.
# M's strides by stage are 7, 7, 14, 14 (256, 256, 512, 512 ch): the FPN neck reads stage 1 (the last at
# stride 7) and stage 3 (the last at stride 14), so the pyramid is S's: strides 7, 14, 28, 56.
_base_ = ['./upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py']

pretrained = 'checkpoints/dynamixer-m_in1k.pth'
model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        out_indices=(1, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 512]))
