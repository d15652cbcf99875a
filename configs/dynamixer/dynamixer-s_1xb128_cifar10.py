# DynaMixer-S fine-tuned on CIFAR-10 with the release's transfer recipe (transfer_learning/transfer_learning.py),
# 1 GPU x 128 images, 60 epochs; configs/dynamixer/README.md "Fine-tuning" lists the items and how each is expressed here.
# Starts from the ImageNet-1k EMA weights without the 1000-class head:
#   python tools/model_converters/dynamixer_to_mmpretrain.py release.pth checkpoints/dynamixer-s_in1k-ema.pth --ema
_base_ = [
    '../_base_/models/dynamixer-s.py',
    '../_base_/datasets/cifar10_dynamixer_224.py',
    '../_base_/schedules/transfer_sgd_dynamixer_60e.py',
    '../_base_/classification_runtime.py',
]

pretrained = 'checkpoints/dynamixer-s_in1k-ema.pth'
model = dict(
    # The backbone only (prefix): the head is new, initialised as the release's (truncated normal, std 0.02). The
    # final norm keeps its ImageNet values (the release's optimizer leaves it out): frozen when the model is built,
    # before DistributedDataParallel wraps it (the optimizer constructor in the schedule also leaves it out).
    backbone=dict(drop_path_rate=0.1, frozen_norm=True,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # Plain cross-entropy on hard labels: no label smoothing, no Mixup/CutMix.
    head=dict(num_classes=10, loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=None,
)
