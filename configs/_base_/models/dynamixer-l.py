# DynaMixer-L classifier as released (97.82 M parameters): drop path 0.3 on ImageNet-1k, 512-channel head input.
_base_ = ['./dynamixer_classifier.py']

model = dict(backbone=dict(arch='l', drop_path_rate=0.3), head=dict(in_channels=512))
