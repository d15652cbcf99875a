# Mask R-CNN with a DynaMixer-S backbone on COCO, 1x schedule (12 epochs, steps at 8 and 11), 8 GPUs x 2 images.
#
# Pyramid. DynaMixer-S has maps at strides 7 (stage 0, 192 ch) and 14 (stages 1-3, 384 ch). The FPN reads
# stages 0 and 3 and adds three 3x3 stride-2 convs on its top output: P7, P14, P28, P56, P112. ResNet's
# Mask R-CNN takes P64 by max-pooling P32, but here P28 and P56 carry RoIs (below), so they are learned
# convs, not subsampled copies of P14.
#
# RPN anchors. ResNet's are stride * 8 on strides 4..64, i.e. 32, 64, 128, 256, 512 px. COCO's objects
# do not change with the backbone, so keep those sizes on the real strides: scale 32 / 7
# (7 * 32/7 = 32, ..., 112 * 32/7 = 512).
#
# RoI levels. SingleRoIExtractor picks the level from the RoI's size (finest_scale 56: < 112 px on the
# first level, 112-224 on the second, ...), independent of the strides, and samples each level at
# 1 / featmap_stride: the four levels are P7, P14, P28, P56, so those are the featmap strides.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/dynamixer_runtime.py',
]

# An ImageNet-1k classifier converted by tools/model_converters/dynamixer_to_mmpretrain.py.
pretrained = 'checkpoints/dynamixer-s_in1k.pth'
roi_strides = [7, 14, 28, 56]
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
    rpn_head=dict(anchor_generator=dict(scales=[32 / 7], strides=[7, 14, 28, 56, 112])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=roi_strides),
        mask_roi_extractor=dict(featmap_strides=roi_strides)))

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
