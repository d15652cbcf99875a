# The embedded demo: the DynaMixer-S recipe on scikit-learn's handwritten digits (written out by
# tools/demo/prepare_digits.py as an ImageNet-style folder), 2 CPU processes.
# Only what the small data and a few CPU minutes need differs from the S recipe (see below).
_base_ = ['./dynamixer-s_8xb256_in1k.py', '../_base_/models/dynamixer-tiny.py']

# The tiny arch (configs/_base_/models/dynamixer-tiny.py): on 56x56 images 8x8 tokens, 4x4 after the transition.
model = dict(
    backbone=dict(arch=dict(_delete_=True, **_base_.dynamixer_tiny_arch), drop_path_rate=0.0),
    head=dict(num_classes=10, in_channels=64))
data_preprocessor = dict(num_classes=10)

data_root = 'data/digits'
# The recipe's pipeline at 56 pixels, less the horizontal flip (a flipped digit is another glyph),
# with crops of at least 35% of the image (smaller ones cut the digit away); RandAugment, random
# erasing and Mixup/CutMix as in the recipe.
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_unreadable='skip'),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomResizedCrop', scale=56, crop_ratio_range=(0.35, 1.0), backend='pillow',
                  interpolation='bilinear')],
            [dict(type='RandomResizedCrop', scale=56, crop_ratio_range=(0.35, 1.0), backend='pillow',
                  interpolation='bicubic')],
        ]),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
# The images are 56 x 56 already: no resize or crop at test time.
test_pipeline = [dict(type='CheckedLoadImageFromFile', on_unreadable='error'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    pin_memory=False,
    dataset=dict(type='CheckedCustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline, _delete_=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    pin_memory=False,
    dataset=dict(type='CheckedCustomDataset', data_root=data_root, data_prefix='val', pipeline=test_pipeline,
                 _delete_=True),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

# 100 epochs of 12 iterations with the same warm-up + cosine shape; an EMA that averages over ~50
# steps rather than ~25k. (Without CUDA, DynaMixerRunner trains the recipe's AMP in float32.)
param_scheduler = [
    dict(type='TimmCosineLR', t_initial=100, eta_min=1e-5, warmup_steps=5, warmup_init=1e-6,
         by_epoch=True, begin=0, end=100),
]
train_cfg = dict(max_epochs=100, val_interval=10)
custom_hooks = [dict(type='EMAHook', momentum=0.02, update_buffers=True, priority='ABOVE_NORMAL')]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=2))
# lr 2e-3 as in the recipe, here at 2 processes x 64 images.
auto_scale_lr = dict(base_batch_size=2 * 64)
