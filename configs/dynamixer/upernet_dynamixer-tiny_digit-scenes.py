# UperNet with a tiny DynaMixer on digit scenes (tools/demo/prepare_digit_scenes.py): the ADE20K config below in
# miniature, its strides (7 and 14), FPN levels and UperNet's PPM over the stride-56 level kept, so that what learns here is that config.
# Only the backbone's size, the data and the schedule differ. The backbone starts from the digits classifier
# (dynamixer-tiny_2xb64_digits.py), as an ADE20K segmentor starts from an ImageNet one:
# tools/demo/train_digit_scenes.sh writes its best checkpoint to `pretrained`.
# From scratch: --cfg-options model.backbone.init_cfg=None.
_base_ = [
    './upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/dynamixer-tiny.py',
    '../_base_/datasets/digit_scenes_segmentation.py',
]

pretrained = 'checkpoints/dynamixer-tiny_digits.pth'
# Scenes of 84-168 px, trained and tested at their own size: batches padded to multiples of 14 (with the
# ignored label 255), not to ADE20K's 512 x 512 crops.
data_preprocessor = dict(size=None, size_divisor=14)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        # The digits classifier's arch (../_base_/models/dynamixer-tiny.py), so that its weights load.
        arch=dict(_delete_=True, **_base_.dynamixer_tiny_arch),
        drop_path_rate=0.0,
        init_cfg=dict(checkpoint=pretrained)),
    # Neck and heads as wide as the backbone (ADE20K's 256 channels would be 4x the backbone's 64).
    neck=dict(in_channels=[32, 64], out_channels=64),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, num_classes=11),
    auxiliary_head=dict(in_channels=64, channels=64, num_classes=11))

# 11 classes: background (0) and the digits 0-9 (1-10), scenes at their own size, no resize, crop or flip (a
# mirrored digit is another glyph): ../_base_/datasets/digit_scenes_segmentation.py.
data_root = _base_.digit_scenes_root
metainfo = _base_.digit_scenes_metainfo
train_pipeline = _base_.digit_scenes_train_pipeline
test_pipeline = _base_.digit_scenes_test_pipeline
train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader

# The ADE20K schedule's shape (linear warm-up, then poly decay) over 2000 iterations of 8 scenes (40 epochs),
# its warm-up scaled to 100 iterations; AdamW at 1e-3 for a small model trained briefly.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=100, end=2000),
]
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(interval=500, max_keep_ckpts=1, save_best='mIoU'))
# A fixed seed: the demo's figures reproduce (--cfg-options randomness.seed=N for another).
randomness = dict(seed=0)
