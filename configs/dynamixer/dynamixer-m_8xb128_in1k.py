# DynaMixer-M on ImageNet-1k, the release's recipe: 8 GPUs x 128 images, lr unchanged. Paper top-1 83.7.
_base_ = ['./dynamixer-s_8xb256_in1k.py']

model = dict(backbone=dict(arch='m', drop_path_rate=0.1), head=dict(in_channels=512))
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
