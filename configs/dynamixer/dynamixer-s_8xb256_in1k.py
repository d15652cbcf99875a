# DynaMixer-S on ImageNet-1k, the release's recipe: 8 GPUs x 256 images. Paper top-1 82.7.
_base_ = [
    '../_base_/models/dynamixer-s.py',
    '../_base_/datasets/imagenet_bs256_dynamixer_224.py',
    '../_base_/schedules/imagenet_adamw_dynamixer_310e.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/dynamixer_runtime.py',
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'),
)
randomness = dict(seed=42)  # timm's default
# The release keeps lr 2e-3 at its 8 x 256 images; --auto-scale-lr scales it linearly to another total batch.
auto_scale_lr = dict(base_batch_size=2048, enable=False)
