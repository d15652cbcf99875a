# The dense demo's baseline: fpn_dynamixer-tiny_digit-scenes.py (same data, schedule, neck and head widths) with
# mmseg's ResNet-18 (ResNetV1c, as mmseg's fpn_r50) instead of the DynaMixer, and what ResNet's strides need: the
# FPN over its four stages, mmseg's own FPNHead at strides 4-32 and inputs padded to multiples of 32 (in training
# and test, so that its logits align with the pixels as ours do at 14). Trained from scratch as the config stands,
# with BN (one process: no SyncBN).
_base_ = ['../dynamixer/fpn_dynamixer-tiny_digit-scenes.py']

model = dict(
    data_preprocessor=dict(size_divisor=32, test_cfg=dict(size_divisor=32)),
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=None),
    neck=dict(_delete_=True, type='FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=4),
    decode_head=dict(type='FPNHead', feature_strides=[4, 8, 16, 32]))
