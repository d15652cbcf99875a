"""The DynaMixer network (Wang et al., ICML 2022), in the state-dict layout of the authors' release.

``patch_embed.proj``, ``network.<k>`` (stages as sequences of layers, and transitions with a
``proj`` conv, in order), ``norm`` and ``head`` are the release's names, so release checkpoints load
unchanged into the classifier, and the mmpretrain backbone differs from it only by prefixes.
"""
import numbers
from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .block import DynaMixerLayer

ARCH_KEYS = ('layers', 'embed_dims', 'resolutions', 'num_segments', 'reduced_dims', 'transitions', 'mlp_ratios')

arch_zoo: Dict[str, dict] = {
    's': dict(layers=[4, 3, 8, 3], embed_dims=[192, 384, 384, 384], resolutions=[32, 16, 16, 16],
              num_segments=[8, 16, 16, 16], reduced_dims=[2, 2, 2, 2],
              transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3]),
    'm': dict(layers=[4, 3, 14, 3], embed_dims=[256, 256, 512, 512], resolutions=[32, 32, 16, 16],
              num_segments=[8, 8, 16, 16], reduced_dims=[2, 2, 2, 2],
              transitions=[False, True, False, False], mlp_ratios=[3, 3, 3, 3]),
    'l': dict(layers=[8, 8, 16, 4], embed_dims=[256, 512, 512, 512], resolutions=[32, 16, 16, 16],
              num_segments=[8, 16, 16, 16], reduced_dims=[8, 8, 8, 8],
              transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3]),
}
PATCH_SIZE = 7


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Return the arch dict for a name in ``arch_zoo`` or check a user's dict."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'Unknown DynaMixer arch {arch!r}; allowed: {sorted(arch_zoo)} or a dict with keys '
                             f'{list(ARCH_KEYS)}')
        return {k: list(v) for k, v in arch_zoo[key].items()}
    if not isinstance(arch, dict):
        raise TypeError(f'DynaMixer arch must be a name in {sorted(arch_zoo)} or a dict, got {type(arch).__name__}')
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = [k for k in arch if k not in ARCH_KEYS]
    if missing or unknown:
        raise ValueError(f'DynaMixer arch dict: missing keys {missing}, unknown keys {unknown}; '
                         f'required keys: {list(ARCH_KEYS)}')
    lengths = {k: len(arch[k]) for k in ARCH_KEYS}
    if len(set(lengths.values())) != 1:
        raise ValueError(f'DynaMixer arch dict: every entry needs one value per stage, got lengths {lengths}')
    for i, (dim, segments) in enumerate(zip(arch['embed_dims'], arch['num_segments'])):
        if dim % segments != 0:
            raise ValueError(f'DynaMixer arch dict: stage {i} num_segments={segments} does not divide '
                             f'embed_dims={dim}')
    return {k: list(arch[k]) for k in ARCH_KEYS}


def stage_strides(arch: dict) -> List[int]:
    """Stride in pixels of each stage's map: 7, doubled after each stride-2 transition."""
    strides, stride = [], PATCH_SIZE
    for i in range(len(arch['layers'])):
        if i > 0 and arch['transitions'][i - 1]:
            stride *= 2
        strides.append(stride)
    return strides


class PatchEmbed(nn.Module):
    """Non-overlapping 7x7 patches; sides that are not multiples of 7 are zero-padded right/bottom."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int = PATCH_SIZE):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image -> (B, H/7, W/7, D) tokens."""
        x = _pad_to_multiple(x, self.patch_size, dims=(2, 3))
        return self.proj(x).permute(0, 2, 3, 1)


class Transition(nn.Module):
    """Between stages: a stride-2 2x2 conv (or a 1x1 conv when only the width changes), on NHWC."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_to_multiple(x.permute(0, 3, 1, 2), self.stride, dims=(2, 3))
        return self.proj(x).permute(0, 2, 3, 1)


def _pad_to_multiple(x: torch.Tensor, multiple: int, dims: Tuple[int, int]) -> torch.Tensor:
    pad_h = -x.shape[dims[0]] % multiple
    pad_w = -x.shape[dims[1]] % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


class DynaMixerNet(nn.Module):
    """DynaMixer: the classifier of the release and the multi-scale feature extractor in one.

    Args:
        arch (str | dict): 's', 'm', 'l' or a dict with the keys of :data:`ARCH_KEYS`, one value per stage.
        in_chans (int): Image channels (timm's name for it).
        num_classes (int): Classes of the linear head; 0 for no head.
        drop_path_rate (float): Stochastic depth of the last layer; layer k of N gets rate * k / (N - 1).
        out_indices (Sequence[int]): Stages whose maps :meth:`forward_features` returns (negative counts
            from the end). Only stages up to the last of them are built.
        final_norm (bool): Output of the last stage goes through ``norm`` (the release's final norm that
            the head reads). Every other output goes through its own ``norm{i}``.
        with_cp (bool): Gradient checkpointing per layer, trading compute for memory.
    """

    def __init__(self, arch: Union[str, dict] = 's', in_chans: int = 3, num_classes: int = 1000,
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] = (-1,), final_norm: bool = True,
                 with_cp: bool = False):
        super().__init__()
        self.arch = resolve_arch(arch)
        num_stages = len(self.arch['layers'])
        self.in_chans = in_chans
        self.out_indices = self._resolve_out_indices(out_indices, num_stages)
        last_stage = self.out_indices[-1]
        if num_classes > 0 and not (final_norm and last_stage == num_stages - 1):
            raise ValueError(f'A head (num_classes={num_classes}) reads the final norm of the last stage: it needs '
                             f'final_norm=True and out_indices ending at {num_stages - 1}, got '
                             f'final_norm={final_norm}, out_indices={out_indices}')
        self.num_classes = num_classes
        self.final_norm = final_norm

        dims = self.arch['embed_dims']
        self.num_features = dims[last_stage]
        self.patch_embed = PatchEmbed(in_chans, dims[0])
        total_layers = sum(self.arch['layers'])
        layer_index = 0
        network = []
        self.stage_positions = []  # index in ``network`` of each built stage
        self.strides = stage_strides(self.arch)[:last_stage + 1]
        for i in range(last_stage + 1):
            if i > 0 and (self.arch['transitions'][i - 1] or dims[i - 1] != dims[i]):
                network.append(Transition(dims[i - 1], dims[i], 2 if self.arch['transitions'][i - 1] else 1))
            layers = []
            for _ in range(self.arch['layers'][i]):
                rate = drop_path_rate * layer_index / max(total_layers - 1, 1)
                layers.append(DynaMixerLayer(dims[i], self.arch['resolutions'][i], self.arch['num_segments'][i],
                                             self.arch['reduced_dims'][i], self.arch['mlp_ratios'][i],
                                             drop_path=rate, with_cp=with_cp))
                layer_index += 1
            self.stage_positions.append(len(network))
            network.append(nn.Sequential(*layers))
        self.network = nn.ModuleList(network)

        for i in self.out_indices:
            self.add_module(self._output_norm_name(i), nn.LayerNorm(dims[i]))
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _resolve_out_indices(out_indices: Sequence[int], num_stages: int) -> Tuple[int, ...]:
        if isinstance(out_indices, numbers.Integral):
            out_indices = (out_indices,)
        resolved = []
        for index in out_indices:
            if not isinstance(index, numbers.Integral) or not -num_stages <= index < num_stages:
                raise ValueError(f'out_indices entry {index!r} is out of range: DynaMixer has {num_stages} stages, '
                                 f'allowed indices are {-num_stages}..{num_stages - 1}')
            resolved.append(int(index) % num_stages)
        if not resolved:
            raise ValueError('out_indices is empty: name at least one stage')
        return tuple(sorted(set(resolved)))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _output_norm_name(self, stage: int) -> str:
        return 'norm' if self.final_norm and stage == len(self.arch['layers']) - 1 else f'norm{stage}'

    def output_norm(self, stage: int) -> nn.Module:
        """The LayerNorm applied to the output of ``stage``."""
        return getattr(self, self._output_norm_name(stage))

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) images -> the normed maps (B, D_i, ceil(H / s_i), ceil(W / s_i)) of ``out_indices``."""
        if x.dim() != 4:
            raise ValueError(f'DynaMixer expects images as a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_chans:
            raise ValueError(f'DynaMixer was built for {self.in_chans}-channel images, got an input '
                             f'with {x.shape[1]} channels, shape {tuple(x.shape)}')
        x = self.patch_embed(x)
        outs = []
        stage = 0
        for position, module in enumerate(self.network):
            x = module(x)
            if position == self.stage_positions[stage]:
                if stage in self.out_indices:
                    outs.append(self.output_norm(stage)(x).permute(0, 3, 1, 2))
                stage += 1
        return tuple(outs)

    def forward_head(self, feature: torch.Tensor) -> torch.Tensor:
        """Mean over the tokens of the last (normed) map, then the linear head."""
        return self.head(feature.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])
