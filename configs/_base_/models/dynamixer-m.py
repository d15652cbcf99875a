# DynaMixer-M classifier as released (57.13 M parameters): drop path 0.1 on ImageNet-1k, 512-channel head input.
_base_ = ['./dynamixer_classifier.py']

model = dict(backbone=dict(arch='m', drop_path_rate=0.1), head=dict(in_channels=512))
