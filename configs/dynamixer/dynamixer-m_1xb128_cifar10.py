# DynaMixer-M fine-tuned on CIFAR-10 with the release's transfer recipe (drop path 0.1, the script's default for
# every model): the S config with the M backbone and its ImageNet-1k EMA weights.
_base_ = ['./dynamixer-s_1xb128_cifar10.py']

pretrained = 'checkpoints/dynamixer-m_in1k-ema.pth'
model = dict(
    backbone=dict(arch='m', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=512))
