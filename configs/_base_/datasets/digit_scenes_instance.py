# digit_scenes_detection.py with the digits' instance masks loaded too (COCO polygons traced from the ink), for
# Mask R-CNN; used the same way.
_base_ = ['./digit_scenes_detection.py']

digit_scenes_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale_factor=1.0),
    dict(type='PackDetInputs'),
]
digit_scenes_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
digit_scenes_train_dataloader = dict(dataset=dict(pipeline=digit_scenes_train_pipeline))
digit_scenes_val_dataloader = dict(dataset=dict(pipeline=digit_scenes_test_pipeline))
