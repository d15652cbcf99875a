# DynaMixer-S fine-tuned on CIFAR-100 with the release's transfer recipe: the CIFAR-10 config on mmpretrain's
# CIFAR100 (data/cifar100/cifar-100-python/train, test, meta).
_base_ = ['./dynamixer-s_1xb128_cifar10.py']

data_root = 'data/cifar100'
data_preprocessor = dict(num_classes=100)
model = dict(head=dict(num_classes=100))
train_dataloader = dict(dataset=dict(type='CIFAR100', data_root=data_root))
val_dataloader = dict(dataset=dict(type='CIFAR100', data_root=data_root))
test_dataloader = val_dataloader
