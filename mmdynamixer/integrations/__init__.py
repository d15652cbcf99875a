"""Thin registrations of the one network (:mod:`mmdynamixer.models`) with the host libraries: the mmpretrain
backbone (also what mmdet and mmseg configs build), mmseg's ``StrideFPNHead``, timm's model entry points. Each
module imports its host library; ``import mmdynamixer`` imports those whose host is installed."""
