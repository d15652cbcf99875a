# Semantic FPN with a DynaMixer-S backbone on ADE20K, 512x512 crops, 40k iterations, 8 GPUs x 4 images
# (the PVT / PoolFormer protocol for MLP and transformer backbones).
#
# Pyramid. DynaMixer-S has maps at strides 7 (stage 0, 192 ch) and 14 (stages 1-3, 384 ch). The FPN reads
# stages 0 and 3 and adds two 3x3 stride-2 convs on its top output: strides 7, 14, 28, 56 (ResNet's 4, 8,
# 16, 32 times 7/4). The head runs 1, 1, 2, 3 conv stages on the four levels, each but the finest followed
# by a 2x upsampling, then resizes to the stride-7 map, so any crop size works. It is StrideFPNHead
# (mmdynamixer/integrations/mmseg.py): mmseg's FPNHead counts those stages with int(log2(s) - log2(7)), which
# gives 1, 1, 1, 2 for these strides (float rounding).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    '../_base_/dynamixer_runtime.py',
]

# An ImageNet-1k classifier converted by tools/model_converters/dynamixer_to_mmpretrain.py.
pretrained = 'checkpoints/dynamixer-s_in1k.pth'
crop_size = (512, 512)
# Inputs padded to multiples of 14, so that the maps at strides 7 and 14 cover the image and nothing more:
# the backbone pads any other size itself (7 * ceil(H / 7) pixels at stride 7), and mmseg resizes the
# logits of that larger area onto the unpadded image, a shift of up to 13 pixels. Training crops go
# into 518 x 518 batches (the padding labelled 255, ignored); test images are padded by 0-13 pixels,
# which mmseg crops from the logits before resizing them (`padding_size`).
data_preprocessor = dict(size=(518, 518), test_cfg=dict(size_divisor=14))
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DynaMixer',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 3),  # the last stage at stride 7 and the last at stride 14
        final_norm=False,  # each output through its own LayerNorm (norm0; norm3, loaded from the final norm)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        in_channels=[192, 384],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=4),
    decode_head=dict(
        type='StrideFPNHead', in_channels=[256, 256, 256, 256], feature_strides=[7, 14, 28, 56], num_classes=150))

train_dataloader = dict(batch_size=4)

# AdamW as for transformer and MLP backbones downstream; no weight decay on norms and biases.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
# Linear warm-up over 1000 iterations, then poly decay (power 0.9) to 0.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=1000, end=40000),
]
# Checkpoints written atomically, the oldest removed only after the new one is complete.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
# Each process its own random numbers (DropPath masks, augmentation): mmengine adds the rank to the seed
# (seed=None: a random one from rank 0, as the toolboxes' runtimes; mmengine needs the key).
randomness = dict(seed=None, diff_rank_seed=True)
