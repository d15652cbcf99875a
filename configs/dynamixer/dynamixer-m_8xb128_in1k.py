# DynaMixer-M on ImageNet-1k, the release's recipe: 8 GPUs x 128 images, lr unchanged. Paper top-1 83.7.
_base_ = ['./dynamixer-s_8xb256_in1k.py']

model = dict(backbone=dict(arch='m', drop_path_rate=0.1), head=dict(in_channels=512))
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
# The release keeps lr 2e-3 at 8 x 128 images.
auto_scale_lr = dict(base_batch_size=1024)
