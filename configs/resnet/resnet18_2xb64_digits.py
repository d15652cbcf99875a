# The ResNet baselines' "ImageNet": mmpretrain's ResNet-18 classifier (the model of its resnet18_8xb32_in1k.py) on
# the handwritten digits, trained exactly as the DynaMixer digits demo (dynamixer-tiny_2xb64_digits.py: data, 56 px
# pipeline, Mixup/CutMix, label smoothing, AdamW, 100 epochs, EMA). Its best checkpoint, published to
# checkpoints/resnet18_digits.pth by mmpretrain's publish_model.py (docs/dense_prediction.md), initialises the backbones of
# retinanet_r18_fpn_digit-scenes.py and fpn_r18-plain-stem_digit-scenes.py, as the DynaMixer digits classifier
# initialises the DynaMixer dense configs.
#     bash tools/dist_train.sh configs/resnet/resnet18_2xb64_digits.py 2
_base_ = ['../dynamixer/dynamixer-tiny_2xb64_digits.py']

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(3, ), style='pytorch'),
    head=dict(in_channels=512))
