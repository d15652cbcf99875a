# DynaMixer-M on ImageNet-1k, the release's recipe: 8 GPUs x 128 images. Paper top-1 83.7.
_base_ = [
    '../_base_/models/dynamixer-m.py',
    '../_base_/datasets/imagenet_bs256_dynamixer_224.py',
    '../_base_/schedules/imagenet_adamw_dynamixer_310e.py',
    '../_base_/classification_runtime.py',
]

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
# The release keeps lr 2e-3 at its 8 x 128 images.
auto_scale_lr = dict(base_batch_size=8 * 128)
# torch.compile per DynaMixer layer on CUDA (about twice the eager speed), nothing on CPU; off with
# --cfg-options default_hooks.compile=None (mmdynamixer/engine/hooks/compile.py).
default_hooks = dict(compile=dict(type='CompileLayersHook'))
