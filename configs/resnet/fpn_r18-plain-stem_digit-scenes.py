# fpn_r18_digit-scenes.py with mmseg's plain ResNet-18 (the 7x7 stem of mmpretrain's and mmdet's ResNet-18) instead
# of ResNetV1c's three 3x3 convs, so that the ResNet-18 digits classifier (resnet18_2xb64_digits.py) loads whole:
# the ResNet Semantic FPN with the same init policy as ours. From scratch: --cfg-options model.backbone.init_cfg=None.
_base_ = ['./fpn_r18_digit-scenes.py']

pretrained = 'checkpoints/resnet18_digits.pth'
model = dict(
    backbone=dict(type='ResNet', init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained,
                                               prefix='backbone.')))
