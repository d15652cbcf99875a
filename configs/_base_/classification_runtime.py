# The classification recipes' runtime: mmpretrain's default runtime, the plugin's declarations
# (dynamixer_runtime.py: custom_imports, DynaMixerRunner), and what the release's timm train.py does on top.
_base_ = ['mmpretrain::_base_/default_runtime.py', './dynamixer_runtime.py']

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    # Written atomically, the oldest removed only after the new one is complete (mmdynamixer/engine/hooks).
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'),
)
# timm's default seed. Each process draws its own random numbers (DropPath masks, Mixup/CutMix, main-process
# transforms), as the release's torch.manual_seed(seed + rank) does: mmengine adds the rank to the seed, and
# ResumableEpochBasedTrainLoop seeds each iteration from (that seed, iteration).
randomness = dict(seed=42, diff_rank_seed=True)
