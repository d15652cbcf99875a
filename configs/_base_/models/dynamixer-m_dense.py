# DynaMixer-M as the backbone of the dense configs (mmdet, mmseg): strides by stage 7, 7, 14, 14 (256, 256, 512,
# 512 ch). The FPN reads stage 1 (the last at stride 7) and stage 3 (the last at stride 14), so the pyramid, anchors
# and RoI levels are the S configs' (strides 7, 14, 28, 56, 112). Initialised from an ImageNet-1k classifier
# converted by tools/model_converters/dynamixer_to_mmpretrain.py.
#
# Variables, not `model`: each M config inherits its S config's model and changes it with them (mmengine refuses a
# key two bases define):
#     model = dict(backbone=_base_.dynamixer_m_backbone, neck=dict(in_channels=_base_.dynamixer_m_neck_in_channels))
dynamixer_m_checkpoint = 'checkpoints/dynamixer-m_in1k.pth'
dynamixer_m_backbone = dict(
    arch='m',
    drop_path_rate=0.2,
    out_indices=(1, 3),
    init_cfg=dict(type='Pretrained', checkpoint=dynamixer_m_checkpoint, prefix='backbone.'))
dynamixer_m_neck_in_channels = [256, 512]
