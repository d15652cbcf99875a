# DynaMixer-S classifier as released (26.27 M parameters): drop path 0.1 on ImageNet-1k, 384-channel head input.
_base_ = ['./dynamixer_classifier.py']

model = dict(backbone=dict(arch='s', drop_path_rate=0.1), head=dict(in_channels=384))
