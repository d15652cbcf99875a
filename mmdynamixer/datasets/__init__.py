"""Datasets and transforms the configs name: image folders checked before they are scanned, and image loading
with a policy for unreadable files. Registered in mmpretrain's ``DATASETS`` and mmcv's ``TRANSFORMS``."""
from .folders import CheckedCustomDataset, CheckedImageNet, check_image_folder
from .transforms import CheckedLoadImageFromFile

__all__ = ['CheckedCustomDataset', 'CheckedImageNet', 'CheckedLoadImageFromFile', 'check_image_folder']
