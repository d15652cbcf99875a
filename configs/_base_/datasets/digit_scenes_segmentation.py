# The dense demo's digit scenes (tools/demo/prepare_digit_scenes.py) for mmseg: 11 classes, background (0) and the
# digits 0-9 (1-10). Scenes of 84-168 px, trained and tested at their own size: no resize, crop or flip (a mirrored
# digit is another glyph), no photometric distortion.
#
# Variables named digit_scenes_*, not train_dataloader & co.: a digit-scenes config also inherits its ADE20K
# config, whose keys these would repeat (mmengine refuses a key two bases define). It sets its own from them, over
# ADE20K's (the datasets replacing ADE20K's whole: _delete_):
#     train_dataloader = _base_.digit_scenes_train_dataloader   (val_, the pipelines, data_root)
digit_scenes_root = 'data/digit_scenes/'
digit_scenes_metainfo = dict(
    classes=('background', ) + tuple(str(digit) for digit in range(10)),
    palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
             [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]])
digit_scenes_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
digit_scenes_test_pipeline = digit_scenes_train_pipeline
digit_scenes_dataset = dict(type='BaseSegDataset', data_root=digit_scenes_root, metainfo=digit_scenes_metainfo,
                            img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False)
digit_scenes_train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_delete_=True, data_prefix=dict(img_path='images/train', seg_map_path='masks/train'),
                 pipeline=digit_scenes_train_pipeline, **digit_scenes_dataset))
digit_scenes_val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_delete_=True, data_prefix=dict(img_path='images/val', seg_map_path='masks/val'),
                 pipeline=digit_scenes_test_pipeline, **digit_scenes_dataset))
