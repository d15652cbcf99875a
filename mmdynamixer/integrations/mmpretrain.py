"""``DynaMixer`` in mmpretrain's ``MODELS`` registry: usable as ``type='mmpretrain.DynaMixer'`` from any
OpenMMLab toolbox after ``custom_imports=dict(imports=['mmdynamixer'])``."""
import copy
from typing import Optional, Sequence, Tuple, Union

import torch
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS

from ..models.dynamixer import DynaMixerNet, arch_zoo


@MODELS.register_module()
class DynaMixer(DynaMixerNet, BaseBackbone):
    """DynaMixer backbone: the release's network without its head, returning stage maps (NCHW).

    The modules are :class:`~mmdynamixer.models.DynaMixerNet`'s, so a converted release checkpoint
    loads with ``prefix='backbone.'`` and no key renaming.

    Args:
        arch (str | dict): 's', 'm', 'l' (see ``arch_zoo``) or a dict with the same keys.
        in_channels (int): Image channels.
        drop_path_rate (float): Stochastic depth of the last layer (linear in depth).
        out_indices (int | Sequence[int]): Stages (0-3, or negative) whose maps are returned.
        final_norm (bool): The last stage's output goes through the release's final ``norm`` (what the
            classifier reads); set False for dense heads so every output has its own ``norm{i}``.
        frozen_stages (int): -1 freezes nothing; 0 the patch embedding; k > 0 the patch embedding and
            stages 0..k-1 with their transitions and output norms (eval mode, no gradients).
        with_cp (bool): Gradient checkpointing per layer.
        init_cfg (dict | list[dict], optional): mmengine initialisation, e.g. ``Pretrained``.
    """
    arch_zoo = arch_zoo

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 out_indices: Union[int, Sequence[int]] = -1,
                 final_norm: bool = True,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(arch=arch, in_chans=in_channels, num_classes=0, drop_path_rate=drop_path_rate,
                         out_indices=out_indices, final_norm=final_norm, with_cp=with_cp)
        self.init_cfg = copy.deepcopy(init_cfg)
        num_stages = len(self.arch['layers'])
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range: allowed -1 (none), 0 (patch '
                             f'embedding) to {num_stages} (all stages)')
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed]
        for stage in range(min(self.frozen_stages, len(self.stage_positions))):
            first = self.stage_positions[stage - 1] + 1 if stage > 0 else 0
            frozen.extend(self.network[first:self.stage_positions[stage] + 1])
            if stage in self.out_indices:
                frozen.append(self.output_norm(stage))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.forward_features(x)
