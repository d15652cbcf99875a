"""Thin layers of the one network (:mod:`mmdynamixer.models`) over the host libraries: the mmpretrain backbone
(also what mmdet and mmseg configs build), mmseg's ``StrideFPNHead``, timm's model entry points, and class
activation maps over pytorch-grad-cam (``grad_cam``). Each module imports its host library; ``import mmdynamixer``
imports the registrations whose host is installed (``grad_cam`` only when a tool uses it)."""
