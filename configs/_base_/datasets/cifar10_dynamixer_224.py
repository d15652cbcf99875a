# CIFAR-10 as the release's transfer script (transfer_learning/transfer_learning.py) feeds it: 32-px images
# resized to 224 (PIL bilinear), a 224 crop of the image padded by 28 zeros, horizontal flip; test images
# resized to 224 x 224; CIFAR's mean and std. mmpretrain's CIFAR10 reads the python-pickle release
# (data/cifar10/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta, md5-checked), downloading it
# when absent, as the release's torchvision dataset does.
dataset_type = 'CIFAR10'
data_root = 'data/cifar10'
data_preprocessor = dict(
    num_classes=10,
    # (0.4914, 0.4822, 0.4465) and (0.2023, 0.1994, 0.2010) of the release, times 255
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    to_rgb=False,  # mmpretrain's CIFAR images are RGB already
)

train_pipeline = [
    # torchvision's Resize(224): shorter side to 224 with PIL's bilinear (the same PIL call)
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='RandomCrop', crop_size=224, padding=28, pad_val=0, padding_mode='constant'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=(224, 224), backend='pillow', interpolation='bilinear'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    pin_memory=True,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=8,
    pin_memory=True,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
