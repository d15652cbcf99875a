# What every mmdynamixer config declares, whichever tool builds its Runner (ours, mmpretrain's, mmdet's or
# mmseg's tools/train.py and dist_train.sh, or mim): the package, imported for its registrations, and its
# Runner (mmdynamixer/engine/runner.py), which checks the config first, resumes from the newest intact
# checkpoint, trains AMP configs in float32 without CUDA, runs --launcher pytorch on CPU with gloo, and adds
# FiniteLossHook and CheckpointShapeCheckHook unless the config lists them.
custom_imports = dict(imports=['mmdynamixer'], allow_failed_imports=False)
runner_type = 'DynaMixerRunner'
