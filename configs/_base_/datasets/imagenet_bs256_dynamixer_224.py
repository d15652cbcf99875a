# ImageNet-1k with the release's (timm's) training augmentation and test transform.
# data/imagenet in the folder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) or mmpretrain's
# annotation-file layout (meta/train.txt, meta/val.txt beside train/ and val/): ImageNet picks
# meta/<split>.txt when it exists and scans the class folders otherwise.
# CheckedImageNet: mmpretrain's ImageNet that checks the folder before scanning it (mmdynamixer/datasets).
dataset_type = 'CheckedImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

train_pipeline = [
    # An unreadable image is skipped with a warning (another sample is drawn); evaluation stops at one.
    dict(type='CheckedLoadImageFromFile', on_unreadable='skip'),
    # timm's interpolation='random': bilinear or bicubic with equal probability.
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bilinear')],
            [dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic')],
        ]),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # rand-m9-mstd0.5-inc1
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    # Pixel mode: per-pixel normal noise, N(0, 1) after normalisation.
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]

# Shorter side to floor(224 / crop_pct), bicubic, then the 224 centre crop: crop 0.9 (S and M) gives 248;
# the L recipe sets ResizeEdge's scale to 256 (crop 0.875).
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_unreadable='error'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# Loading (tools/analysis/benchmark_pipeline.py, docs/benchmarks.md#input-pipeline): this pipeline makes about 250
# images per CPU-second, so 12 workers feed up to ~3000 images/s per GPU, given 12 free cores per GPU.
# Workers stack each batch (default_collate): the main process then receives one image tensor per
# batch instead of 256, half its CPU time per batch; the values are the same.
train_dataloader = dict(
    batch_size=256,
    num_workers=12,
    pin_memory=True,
    # Fresh workers each epoch start from fixed seeds: what makes resume bit-identical
    # (mmdynamixer/engine/loops.py).
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=10,
    pin_memory=True,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
