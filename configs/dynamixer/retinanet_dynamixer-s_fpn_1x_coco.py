# RetinaNet with a DynaMixer-S backbone on COCO, 1x schedule (12 epochs, steps at 8 and 11), 8 GPUs x 2 images.
#
# Pyramid. DynaMixer-S has maps at strides 7 (stage 0, 192 ch) and 14 (stages 1-3, 384 ch); there is no
# stride 28 or 32 stage. The FPN reads the last map of each stride (stages 0 and 3) and adds three 3x3
# stride-2 convs on its own top output: levels P7, P14, P28, P56, P112 (ceil division at every step, so
# odd image sizes are fine). The anchor strides below are these real strides, not ResNet's 8..128.
#
# Anchor sizes. RetinaNet's anchors are stride * octave_base_scale * 2^(k/3), k = 0, 1, 2: with ResNet
# (strides 8..128, octave_base_scale 4) the smallest anchor per level is 32, 64, 128, 256, 512 px. COCO's
# objects do not change with the backbone, so keep exactly those sizes: octave_base_scale = 32 / 7
# (7 * 32/7 = 32, ..., 112 * 32/7 = 512). With 4 instead, every anchor would shrink by 1/8 (28..448 px)
# and the largest objects would lose their best-matching anchors.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/dynamixer_runtime.py',
]

# An ImageNet-1k classifier converted by tools/model_converters/dynamixer_to_mmpretrain.py.
pretrained = 'checkpoints/dynamixer-s_in1k.pth'
model = dict(
    # The backbone pads to multiples of 7 (patch embedding) and 14 (transition) by itself, with the
    # same zeros as this padding; padding batches to 14 instead of 32 adds no further padded pixels.
    data_preprocessor=dict(pad_size_divisor=14),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DynaMixer',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 3),  # the last stage at stride 7 and the last at stride 14
        final_norm=False,  # each output through its own LayerNorm (norm0; norm3, loaded from the final norm)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        type='FPN',
        in_channels=[192, 384],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        anchor_generator=dict(octave_base_scale=32 / 7, scales_per_octave=3, strides=[7, 14, 28, 56, 112])))

# AdamW as for transformer and MLP backbones downstream; no weight decay on norms and biases.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
# Checkpoints written atomically, the oldest removed only after the new one is complete.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
# Each process its own random numbers (DropPath masks, augmentation): mmengine adds the rank to the seed
# (seed=None: a random one from rank 0, as the toolboxes' runtimes; mmengine needs the key).
randomness = dict(seed=None, diff_rank_seed=True)
