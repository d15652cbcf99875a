# RetinaNet with a tiny DynaMixer on digit scenes (tools/demo/prepare_digit_scenes.py): the COCO config
# below in miniature, its strides (7 and 14), FPN levels (P7-P112) and anchors (octave_base_scale 32/7)
# kept, so that what learns here is that config. Only the backbone's size, the data and the schedule differ.
# The backbone starts from the digits classifier (dynamixer-tiny_2xb64_digits.py), as a COCO detector
# starts from an ImageNet one: tools/demo/train_digit_scenes.sh writes its best checkpoint to `pretrained`.
# From scratch: --cfg-options model.backbone.init_cfg=None.
_base_ = [
    './retinanet_dynamixer-s_fpn_1x_coco.py',
    '../_base_/models/dynamixer-tiny.py',
    '../_base_/datasets/digit_scenes_detection.py',
]

pretrained = 'checkpoints/dynamixer-tiny_digits.pth'
model = dict(
    backbone=dict(
        # The digits classifier's arch (../_base_/models/dynamixer-tiny.py), so that its weights load.
        arch=dict(_delete_=True, **_base_.dynamixer_tiny_arch),
        drop_path_rate=0.0,
        init_cfg=dict(checkpoint=pretrained)),
    # Neck and head as wide as the backbone (COCO's 256 channels would be 4x the backbone's 64).
    neck=dict(in_channels=[32, 64], out_channels=64),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64))

# Scenes of 84-168 px with digits of 20-60 px, trained and tested at their own size (no resize, no flip: a
# mirrored digit is another glyph): ../_base_/datasets/digit_scenes_detection.py.
data_root = _base_.digit_scenes_root
metainfo = _base_.digit_scenes_metainfo
train_pipeline = _base_.digit_scenes_train_pipeline
test_pipeline = _base_.digit_scenes_test_pipeline
train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.digit_scenes_val_evaluator
test_evaluator = val_evaluator

# The 1x schedule's shape (steps at 2/3 and 11/12 of the run) over 12 epochs of 125 iterations (the demo's 1000
# training scenes, 8 a batch), its 500-iteration warm-up scaled to 50; AdamW at 1e-3 for a small model.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(max_epochs=12, val_interval=3)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=3, max_keep_ckpts=1, save_best='auto'))
# A fixed seed: the demo's figures reproduce (--cfg-options randomness.seed=N for another).
randomness = dict(seed=0)
