# DynaMixer-L fine-tuned on CIFAR-100 with the release's transfer recipe (drop path 0.1, the script's default for
# every model): the S config with the L backbone and its ImageNet-1k EMA weights.
_base_ = ['./dynamixer-s_1xb128_cifar100.py']

pretrained = 'checkpoints/dynamixer-l_in1k-ema.pth'
model = dict(
    backbone=dict(arch='l', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=512))
