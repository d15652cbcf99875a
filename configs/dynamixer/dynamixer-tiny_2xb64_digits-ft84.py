# Fine-tuning the digits demo's 56-px model at 84 px (docs/finetuning.md, another input size): the demo config
# on data/digits84, 12 x 12 tokens then 6 x 6, from the demo's checkpoint with its generate layers resampled to
# that grid, the better option measured (91.1 % top-1 after 10 epochs, windowed 82.5 %, from scratch 16.3 %):
#   .venv/bin/python tools/demo/prepare_digits.py data/digits84 --size 84
#   .venv/bin/python tools/model_converters/dynamixer_resample.py work_dirs/dynamixer-tiny_2xb64_digits/epoch_100.pth \
#       work_dirs/dynamixer-tiny_2xb64_digits-ft84/resampled_84px.pth --size 84   # resolutions=[12, 6, 6, 6]
#   tools/dist_train.sh configs/dynamixer/dynamixer-tiny_2xb64_digits-ft84.py 2
# The other options, by --cfg-options:
#   windowed: load_from=<the 56-px checkpoint itself> "model.backbone.arch.resolutions=[8,4,4,4]"
#   from scratch: load_from=None
_base_ = ['./dynamixer-tiny_2xb64_digits.py']

model = dict(backbone=dict(arch=dict(resolutions=[12, 6, 6, 6])))
load_from = 'work_dirs/dynamixer-tiny_2xb64_digits-ft84/resampled_84px.pth'

data_root = 'data/digits84'
image_size = 84
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_unreadable='skip'),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
                  interpolation='bilinear')],
            [dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
                  interpolation='bicubic')],
        ]),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

# A few epochs at a quarter of the demo's lr, one of them warm-up, cosine to 1e-5.
num_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='TimmCosineLR', t_initial=num_epochs, eta_min=1e-5, warmup_steps=1, warmup_init=1e-6,
         by_epoch=True, begin=0, end=num_epochs),
]
train_cfg = dict(max_epochs=num_epochs, val_interval=5)
