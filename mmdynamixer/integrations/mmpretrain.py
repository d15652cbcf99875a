"""``DynaMixer`` in mmpretrain's ``MODELS`` registry: usable as ``type='mmpretrain.DynaMixer'`` from any
OpenMMLab toolbox after ``custom_imports=dict(imports=['mmdynamixer'])``; and our configs in mmpretrain's model hub
(``mmpretrain.list_models``, ``get_model``)."""
import copy
import os.path as osp
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.model.weight_init import PretrainedInit
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.apis import ModelHub
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS

from ..checkpoints import check_checkpoint_file
from ..engine.serialization import mmengine_checkpoint_loading
from ..models.dynamixer import DynaMixerNet, arch_zoo

# A checkpoint of this architecture holds every backbone tensor, less those a user changes on purpose (the
# patch embedding for other in_channels, a stage added); another model's file or a wrong prefix matches at
# most a few generic names (norm, patch_embed.proj) out of the backbone's hundreds (S 492, M 654, L 978; the
# tests' TINY_ARCH 114). Half separates the two with a wide margin either way; partial loads above it keep
# mmengine's warning listing the missing keys.
MIN_PRETRAINED_FRACTION = 0.5
# Output norms of stages other than the classifier's last (dense backbones): new, absent from a classifier.
_OUTPUT_NORM = re.compile(r'^norm\d+\.')
# A layer (network.<entry>.<layer>.) or a transition (network.<entry>.proj.).
_NETWORK_ENTRY = re.compile(r'^network\.(?P<entry>\d+)\.(?:(?P<layer>\d+)|proj)\.')


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
        frozen_norm (bool): The final ``norm`` keeps the values it is loaded with (no gradients), as in the
            release's transfer recipe; frozen when built, so that DistributedDataParallel leaves it out.
        with_cp (bool): Gradient checkpointing per layer.
        fused_mixing (bool): Mix tokens in the fused Triton kernel on CUDA (False: the eager op everywhere).
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
                 frozen_norm: bool = False,
                 with_cp: bool = False,
                 fused_mixing: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(arch=arch, in_chans=in_channels, num_classes=0, drop_path_rate=drop_path_rate,
                         out_indices=out_indices, final_norm=final_norm, with_cp=with_cp, fused_mixing=fused_mixing)
        self.init_cfg = copy.deepcopy(init_cfg)
        num_stages = len(self.arch['layers'])
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range: allowed -1 (none), 0 (patch '
                             f'embedding) to {num_stages} (all stages)')
        self.frozen_stages = frozen_stages
        self._freeze_stages()
        if frozen_norm:
            if not hasattr(self, 'norm'):
                raise ValueError(f'frozen_norm=True freezes the final norm, which final_norm={final_norm} and '
                                 f'out_indices={out_indices} do not build: it needs final_norm=True and the last stage')
            self.norm.requires_grad_(False)

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

    def init_weights(self) -> None:
        """mmengine's initialisation, after checking each ``Pretrained`` init_cfg: its checkpoint must exist, be a
        checkpoint, and hold at least ``MIN_PRETRAINED_FRACTION`` of the backbone's tensors (same name and shape,
        output norms ``norm{i}`` aside) under its ``prefix``. mmengine itself loads with ``strict=False`` and only
        warns, so a wrong file or prefix would train from random weights. The checkpoint loads weights-only, with
        mmengine's checkpoint types allowed during this call only."""
        with mmengine_checkpoint_loading():
            if not self.is_init:
                init_cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
                for cfg in init_cfgs:
                    if isinstance(cfg, Mapping) and cfg.get('type') in ('Pretrained', PretrainedInit):
                        self._check_pretrained(cfg['checkpoint'], cfg.get('prefix'), cfg.get('map_location', 'cpu'))
            super().init_weights()

    def _check_pretrained(self, checkpoint: str, prefix: Optional[str], map_location) -> None:
        source = f'init_cfg Pretrained checkpoint={checkpoint!r}, prefix={prefix!r}'
        local = '://' not in str(checkpoint)  # mmengine's loader for paths without a scheme
        try:
            if local:
                check_checkpoint_file(osp.expanduser(str(checkpoint)))
            loaded = CheckpointLoader.load_checkpoint(str(checkpoint), map_location=map_location)
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(f'DynaMixer backbone {source}: {error}') from error
        except Exception as error:  # torch.load's errors for a damaged local file (a URL's errors pass as they are)
            if not local:
                raise
            raise ValueError(f'DynaMixer backbone {source}: cannot load it: {type(error).__name__}: '
                             f'{str(error).strip().splitlines()[0] if str(error).strip() else ""}') from error
        state_dict = loaded.get('state_dict', loaded) if isinstance(loaded, Mapping) else {}
        if prefix:  # what mmengine's _load_checkpoint_with_prefix keeps
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            candidates = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        else:  # what mmengine's load_checkpoint keeps (it strips DDP's module.)
            candidates = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
        expected = {k: v.shape for k, v in self.state_dict().items() if not _OUTPUT_NORM.match(k)}
        found = {k for k, shape in expected.items()
                 if isinstance(candidates.get(k), torch.Tensor) and candidates[k].shape == shape}
        if len(found) >= MIN_PRETRAINED_FRACTION * len(expected):
            return
        mismatched = [f'{k}: {tuple(candidates[k].shape)} vs {tuple(shape)}' for k, shape in expected.items()
                      if k in candidates and k not in found]
        raise ValueError(
            f'DynaMixer backbone {source}: only {len(found)} of the backbone\'s {len(expected)} tensors are in the '
            f'checkpoint with the same name and shape (at least {MIN_PRETRAINED_FRACTION:.0%} must be): a wrong '
            f'file or prefix would train from random weights. The backbone expects e.g. {list(expected)[:4]}; '
            f'under the prefix the checkpoint has {len(candidates)} keys, e.g. {list(candidates)[:4]}'
            + (f', shapes differing: {mismatched[:3]}' if mismatched else '')
            + f'; its keys are e.g. {list(state_dict)[:4]}.')

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter and the number of depths, for mmpretrain's layer-wise lr decay
        (``LearningRateDecayOptimWrapperConstructor`` with ``layer_decay_rate``): the patch embedding 0, the k-th
        DynaMixer layer (counted over all stages from 1) k, a transition that of the layer before it (as Swin's
        patch merging), the output norms and everything not under ``prefix`` (the head) the last depth."""
        num_layers = sum(len(self.network[position]) for position in self.stage_positions)
        last = num_layers + 1
        if not param_name.startswith(prefix):
            return last, last + 1
        name = param_name[len(prefix):]
        if name.startswith('patch_embed.'):
            return 0, last + 1
        match = _NETWORK_ENTRY.match(name)
        if match is None:
            return last, last + 1
        entry = int(match['entry'])
        depth = sum(len(self.network[position]) for position in self.stage_positions if position < entry)
        if match['layer'] is not None:
            depth += int(match['layer']) + 1
        return depth, last + 1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.forward_features(x)


def register_model_index() -> None:
    """Our configs in mmpretrain's model hub, from the ``model-index.yml`` an installed package carries in
    ``mmdynamixer/.mim`` (where mim reads it too), else from the root of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for root in (package / '.mim', package.parent):
        if (root / 'model-index.yml').is_file():
            ModelHub.register_model_index(root / 'model-index.yml', config_prefix=root)
            return


register_model_index()
