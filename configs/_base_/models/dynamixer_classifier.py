# What the DynaMixer-S, -M and -L classifiers share, as released: the backbone with its final norm, mean over
# tokens, a linear head, and the training targets. models/dynamixer-{s,m,l}.py add the arch.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='DynaMixer', out_indices=-1, final_norm=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        # Soft-target cross-entropy with smoothing 0.1, as timm applies it to mixed targets.
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0)),
    # Mixup 0.8 or CutMix 1.0 on every batch, each with probability 0.5 (timm's switch prob).
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
