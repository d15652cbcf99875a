# The dense demo's digit scenes (tools/demo/prepare_digit_scenes.py) for mmdet: COCO-style boxes of the digits
# 0-9. Scenes of 84-168 px with digits of 20-60 px, trained and tested at their own size (no resize, no flip: a
# mirrored digit is another glyph).
#
# Variables named digit_scenes_*, not train_dataloader & co.: a digit-scenes config also inherits its COCO config,
# whose keys these would repeat (mmengine refuses a key two bases define). It sets its own from them, over COCO's:
#     train_dataloader = _base_.digit_scenes_train_dataloader   (val_, the evaluator, the pipelines, data_root)
digit_scenes_root = 'data/digit_scenes/'
digit_scenes_metainfo = dict(classes=tuple(str(digit) for digit in range(10)))
digit_scenes_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale_factor=1.0),
    dict(type='PackDetInputs'),
]
digit_scenes_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
digit_scenes_train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(data_root=digit_scenes_root, metainfo=digit_scenes_metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), pipeline=digit_scenes_train_pipeline))
digit_scenes_val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(data_root=digit_scenes_root, metainfo=digit_scenes_metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/val/'),
                 pipeline=digit_scenes_test_pipeline))
digit_scenes_val_evaluator = dict(ann_file=digit_scenes_root + 'annotations/instances_val.json')
