# The release's optimisation (timm train.py): AdamW lr 2e-3 whatever the batch, weight decay 0.05
# except on norms and biases, fp16 mixed precision with dynamic loss scaling, EMA 0.99996 per step.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)

# timm's cosine, stepped per epoch: linear warm-up from 1e-6 over 20 epochs, cosine of the absolute
# epoch over 300 epochs to 1e-5, then 10 cool-down epochs at 1e-5 (310 in all).
param_scheduler = [
    dict(type='TimmCosineLR', t_initial=300, eta_min=1e-5, warmup_steps=20, warmup_init=1e-6,
         by_epoch=True, begin=0, end=310),
]

# Resumes bit-identically, also from a checkpoint saved mid-epoch (mmdynamixer/engine/loops.py).
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=310, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# (DynaMixerRunner adds FiniteLossHook and CheckpointShapeCheckHook itself.)
custom_hooks = [dict(type='EMAHook', momentum=4e-5, update_buffers=True, priority='ABOVE_NORMAL')]

# The lr above is the release's at its total batch, which each recipe gives as base_batch_size (its GPUs x
# images per GPU); --auto-scale-lr (tools/train.py) scales the lr linearly to the run's total batch.
auto_scale_lr = dict(enable=False)
