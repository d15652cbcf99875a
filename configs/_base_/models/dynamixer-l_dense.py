# DynaMixer-L as the backbone of the dense configs (mmdet, mmseg): strides by stage 7, 14, 14, 14 (256, 512, 512,
# 512 ch). The FPN reads stages 0 and 3 (the last at strides 7 and 14), so the pyramid, anchors and RoI levels are
# the S configs' (strides 7, 14, 28, 56, 112). Initialised from an ImageNet-1k classifier converted by
# tools/model_converters/dynamixer_to_mmpretrain.py.
#
# Variables, not `model`: each L config inherits its S config's model and changes it with them (mmengine refuses a
# key two bases define):
#     model = dict(backbone=_base_.dynamixer_l_backbone, neck=dict(in_channels=_base_.dynamixer_l_neck_in_channels))
dynamixer_l_checkpoint = 'checkpoints/dynamixer-l_in1k.pth'
dynamixer_l_backbone = dict(
    arch='l',
    drop_path_rate=0.3,
    out_indices=(0, 3),
    init_cfg=dict(type='Pretrained', checkpoint=dynamixer_l_checkpoint, prefix='backbone.'))
dynamixer_l_neck_in_channels = [256, 512]
