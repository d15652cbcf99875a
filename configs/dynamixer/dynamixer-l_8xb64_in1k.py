# DynaMixer-L on ImageNet-1k, the release's recipe: 8 GPUs x 64 images. Paper top-1 84.3.
_base_ = [
    '../_base_/models/dynamixer-l.py',
    '../_base_/datasets/imagenet_bs256_dynamixer_224.py',
    '../_base_/schedules/imagenet_adamw_dynamixer_310e.py',
    '../_base_/classification_runtime.py',
]

# Test crop 0.875 (S and M: 0.9): shorter side floor(224 / 0.875) = 256; otherwise the dataset base's
# test pipeline, checked image loading included.
test_pipeline = [dict(t, scale=256) if t['type'] == 'ResizeEdge' else t for t in _base_.test_pipeline]
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# The release keeps lr 2e-3 at its 8 x 64 images.
auto_scale_lr = dict(base_batch_size=8 * 64)
# torch.compile per DynaMixer layer on CUDA (about twice the eager speed), nothing on CPU; off with
# --cfg-options default_hooks.compile=None (mmdynamixer/engine/hooks/compile.py).
default_hooks = dict(compile=dict(type='CompileLayersHook'))
