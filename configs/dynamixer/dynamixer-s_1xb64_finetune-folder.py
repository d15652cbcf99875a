# DynaMixer-S fine-tuned on your own images: N classes in an image folder, from the ImageNet-1k EMA weights with a
# new N-class head, on 1 GPU x 64 images (docs/finetuning.md). The release's transfer optimisation (SGD, the
# backbone at 0.01 x the lr, the final norm frozen, 60 cosine epochs) at half its lr for half its batch, with
# ImageNet's normalisation, a random-resized-crop + flip training pipeline and the S test transform.
#
# Layout under data_root: train/<class>/*.jpg and val/<class>/*.jpg (class = sub-folder name, sorted), or
# mmpretrain's annotation files (set ann_file='meta/train.txt' with lines "<path relative to data_prefix> <label>").
# Set the root and the class count (5 here) where they are used:
#   python tools/train.py configs/dynamixer/dynamixer-s_1xb64_finetune-folder.py --cfg-options \
#     model.head.num_classes=5 data_preprocessor.num_classes=5 train_dataloader.dataset.data_root=data/flowers \
#     val_dataloader.dataset.data_root=data/flowers test_dataloader.dataset.data_root=data/flowers
# Adding the class names, e.g. 'train_dataloader.dataset.classes=[daisy,rose,tulip,sunflower,dandelion]' (and the
# same for val_dataloader), makes the dataset check that the folder has exactly those N class sub-folders.
# CheckedCustomDataset names a missing folder, another number of class folders than classes, or a folder
# without images; CheckedLoadImageFromFile skips an unreadable training image with a warning and stops
# evaluation at one, naming the file.
_base_ = [
    '../_base_/models/dynamixer-s.py',
    '../_base_/datasets/imagenet_bs256_dynamixer_224.py',
    '../_base_/schedules/transfer_sgd_dynamixer_60e.py',
    '../_base_/classification_runtime.py',
]

pretrained = 'checkpoints/dynamixer-s_in1k-ema.pth'
num_classes = 10
data_root = 'data/custom'
model = dict(
    # The final norm frozen when the model is built (before DistributedDataParallel wraps it), as the schedule's
    # optimizer constructor expects.
    backbone=dict(frozen_norm=True, init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(num_classes=num_classes, loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=None,
)
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_unreadable='skip'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(_delete_=True, type='CheckedCustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(_delete_=True, type='CheckedCustomDataset', data_root=data_root, data_prefix='val',
                 pipeline={{_base_.test_pipeline}}),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# The release's 0.01 at 128 images, scaled linearly to 64 (--auto-scale-lr rescales it to the run's batch).
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(base_batch_size=64)
custom_hooks = []
