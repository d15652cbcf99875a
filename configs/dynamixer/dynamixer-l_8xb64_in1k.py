# DynaMixer-L on ImageNet-1k, the release's recipe: 8 GPUs x 64 images, lr unchanged. Paper top-1 84.3.
_base_ = ['./dynamixer-s_8xb256_in1k.py']

model = dict(backbone=dict(arch='l', drop_path_rate=0.3), head=dict(in_channels=512))
# Test crop 0.875: shorter side floor(224 / 0.875) = 256.
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_unreadable='error'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# The release keeps lr 2e-3 at 8 x 64 images.
auto_scale_lr = dict(base_batch_size=512)
