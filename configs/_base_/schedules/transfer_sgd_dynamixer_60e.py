# The release's transfer optimisation (transfer_learning/transfer_learning.py): SGD momentum 0.9, lr 0.01,
# weight decay 5e-4 on every parameter; the patch embedding and the stages at 0.01 x the lr, the head at the
# lr; the final norm in no parameter group, so it keeps its ImageNet values (FrozenParamsOptimWrapperConstructor,
# mmdynamixer/engine; a model config using this schedule freezes it when built, backbone frozen_norm=True, or
# several processes fail: DistributedDataParallel wraps the model before this constructor runs); plain float32;
# 60 epochs of cosine annealing with eta_min 2e-4, per epoch.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    constructor='FrozenParamsOptimWrapperConstructor',
    paramwise_cfg=dict(
        frozen=['backbone.norm.'],
        custom_keys={'backbone.patch_embed.': dict(lr_mult=0.01), 'backbone.network.': dict(lr_mult=0.01)}),
)
# As torch's CosineAnnealingLR in the release, mmengine's sets every group to eta_min at T_max, whatever its
# own lr: the head's falls from 1e-2 to 2e-4, while the backbone's, starting at 1e-4 below eta_min, RISES to
# 2e-4 along the same half cosine (1.5e-4 at epoch 30). Kept as released.
param_scheduler = [dict(type='CosineAnnealingLR', T_max=60, eta_min=2e-4, by_epoch=True, begin=0, end=60)]

train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=60, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The release's lr is for one GPU with 128 images; --auto-scale-lr scales it linearly to another total batch.
auto_scale_lr = dict(base_batch_size=128, enable=False)
