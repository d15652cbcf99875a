"""The DynaMixer network (Wang et al., ICML 2022), in the state-dict layout of the authors' release.

``patch_embed.proj``, ``network.<k>`` (stages as sequences of layers, and transitions with a
``proj`` conv, in order), ``norm`` and ``head`` are the release's names, so release checkpoints load
unchanged into the classifier, and the mmpretrain backbone differs from it only by prefixes.
"""
import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .block import DynaMixerBlock, DynaMixerLayer
from .mixing import static_sizes

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
GLOBAL_POOLS = ('avg', '')


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
        return self.proj(_pad_to_multiple(x, self.patch_size)).permute(0, 2, 3, 1)


class Transition(nn.Module):
    """Between stages: a stride-2 2x2 conv (or a 1x1 conv when only the width changes), on NHWC."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        if self.stride > 1:
            x = _pad_to_multiple(x, self.stride)
        return self.proj(x).permute(0, 2, 3, 1)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad an NCHW map right and bottom to multiples of ``multiple``; traced with symbolic sizes, the
    amounts are computed in the graph."""
    pad_h = (multiple - x.shape[2] % multiple) % multiple
    pad_w = (multiple - x.shape[3] % multiple) % multiple
    if static_sizes(pad_h, pad_w) and pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def _stage_numbers(indices: Sequence[int], num_stages: int, name: str, stages: str) -> List[int]:
    """``indices`` (negative ones count from the end) as stage numbers 0..num_stages-1, in order; ValueError
    naming the argument ``name`` for an entry out of range or for none at all (``stages`` says what is counted)."""
    resolved = []
    for index in indices:
        if not isinstance(index, numbers.Integral) or not -num_stages <= index < num_stages:
            raise ValueError(f'{name} entry {index!r} is out of range: {stages}, allowed indices are '
                             f'{-num_stages}..{num_stages - 1}')
        resolved.append(int(index) % num_stages)
    if not resolved:
        raise ValueError(f'{name} is empty: name at least one stage')
    return resolved


def resolve_out_indices(out_indices: Union[int, Sequence[int]], num_stages: int) -> Tuple[int, ...]:
    """The stages whose outputs a backbone returns, as sorted non-negative indices: ``out_indices`` as configs
    write it (an int or a sequence, negative counting from the last of ``num_stages``). Raises ``ValueError``
    naming any index out of range."""
    if isinstance(out_indices, numbers.Integral):
        out_indices = (out_indices,)
    resolved = _stage_numbers(out_indices, num_stages, 'out_indices', f'DynaMixer has {num_stages} stages')
    return tuple(sorted(set(resolved)))


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """An NHWC map as a contiguous NCHW tensor. A permuted view would have channels-last strides, which convs keep
    (an FPN's outputs too) and which mmcv's RoIAlign misreads as NCHW memory without a word (its CPU and CUDA kernels
    index the raw data): Mask R-CNN's RoI heads then learn nothing. timm's and mmdet's Swin copy for the same reason.
    A copy always, not ``contiguous()``: whether that copies depends on the sizes (a side of 1 token is contiguous
    either way), and torch.export would guard the graph to the traced side's case."""
    return x.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


@torch.fx.wrap  # a call in torch.fx graphs, so the checks run on the real input
def _check_images(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f'DynaMixer expects images as a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(f'DynaMixer was built for {in_chans}-channel images, got an input '
                         f'with {x.shape[1]} channels, shape {tuple(x.shape)}')
    return x


class DynaMixerNet(nn.Module):
    """DynaMixer: the classifier of the release and the multi-scale feature extractor in one.

    Two output contracts share the network. :meth:`forward_features` returns the normed maps of
    ``out_indices`` as a tuple (an OpenMMLab backbone's output; the mmpretrain ``DynaMixer`` is this
    class), and :meth:`forward_head` reads the last of them. The timm models
    (:mod:`mmdynamixer.integrations.timm`) return only that last map from ``forward_features``, as timm
    expects. timm's model API is here for both: ``feature_info``, :meth:`forward_intermediates`,
    :meth:`prune_intermediate_layers`, :meth:`reset_classifier`, :meth:`set_grad_checkpointing`,
    :meth:`group_matcher`.

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
        global_pool (str): What :meth:`forward_head` does with the last map: 'avg' (mean over positions,
            the release's) or '' (keep the map; only without a head).
        fused_mixing (bool): Mix tokens in the fused Triton kernel where it applies (CUDA, see
            :class:`~mmdynamixer.models.block.DynaMixerBlock`); False keeps the eager op everywhere.
    """

    def __init__(self, arch: Union[str, dict] = 's', in_chans: int = 3, num_classes: int = 1000,
                 drop_path_rate: float = 0.0, out_indices: Sequence[int] = (-1,), final_norm: bool = True,
                 with_cp: bool = False, global_pool: str = 'avg', fused_mixing: bool = True):
        super().__init__()
        self.arch = resolve_arch(arch)
        num_stages = len(self.arch['layers'])
        self.in_chans = in_chans
        self.out_indices = resolve_out_indices(out_indices, num_stages)
        last_stage = self.out_indices[-1]
        if num_classes > 0 and not (final_norm and last_stage == num_stages - 1):
            raise ValueError(f'A head (num_classes={num_classes}) reads the final norm of the last stage: it needs '
                             f'final_norm=True and out_indices ending at {num_stages - 1}, got '
                             f'final_norm={final_norm}, out_indices={out_indices}')
        self.final_norm = final_norm

        dims = self.arch['embed_dims']
        self.num_features = self.head_hidden_size = dims[last_stage]
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
                                             drop_path=rate, with_cp=with_cp, fused_mixing=fused_mixing))
                layer_index += 1
            self.stage_positions.append(len(network))
            network.append(nn.Sequential(*layers))
        self.network = nn.ModuleList(network)
        # timm's description of the stage outputs: channels, stride in pixels, module that computes them.
        self.feature_info = [dict(num_chs=dims[i], reduction=self.strides[i], module=f'network.{position}')
                             for i, position in enumerate(self.stage_positions)]

        for i in self.out_indices:
            self.add_module(self._output_norm_name(i), nn.LayerNorm(dims[i]))
        self.reset_classifier(num_classes, global_pool)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A classifier's final ``norm`` is the output norm of the last stage: a dense model (``final_norm=False``,
        the last stage normed by its own ``norm{last}``) takes it from a classifier checkpoint, as mmpretrain's Swin
        carries its ``norm3`` from ImageNet to COCO. A checkpoint that has ``norm{last}`` keeps it."""
        last_norm = f'norm{len(self.arch["layers"]) - 1}'
        if hasattr(self, last_norm) and not hasattr(self, 'norm'):
            for name in ('weight', 'bias'):
                if f'{prefix}norm.{name}' in state_dict and f'{prefix}{last_norm}.{name}' not in state_dict:
                    state_dict[f'{prefix}{last_norm}.{name}'] = state_dict.pop(f'{prefix}norm.{name}')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _output_norm_name(self, stage: int) -> str:
        return 'norm' if self.final_norm and stage == len(self.arch['layers']) - 1 else f'norm{stage}'

    def output_norm(self, stage: int) -> nn.Module:
        """The LayerNorm applied to the output of ``stage``."""
        return getattr(self, self._output_norm_name(stage))

    def _has_output_norm(self, stage: int) -> bool:
        return hasattr(self, self._output_norm_name(stage))

    # timm's model API --------------------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new linear head (``num_classes`` 0: none) reading ``num_features``; ``global_pool`` 'avg' or ''."""
        global_pool = self.global_pool if global_pool is None else global_pool
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f'global_pool={global_pool!r} is not supported: allowed {GLOBAL_POOLS}')
        if not isinstance(num_classes, numbers.Integral) or num_classes < 0:
            raise ValueError(f'num_classes={num_classes!r}: expected an int >= 0 (0 for no head)')
        if num_classes > 0 and not global_pool:
            raise ValueError(f"global_pool='' keeps the (B, C, H, W) map, which a linear head cannot read: pass "
                             f"num_classes=0 with it, got num_classes={num_classes}")
        self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them (``with_cp``)."""
        for module in self.modules():
            if isinstance(module, DynaMixerLayer):
                module.with_cp = enable

    def set_fused_mixing(self, enable: bool = True) -> None:
        """Mix tokens in the fused kernel where it applies (True), or in the eager op everywhere (False)."""
        for module in self.modules():
            if isinstance(module, DynaMixerBlock):
                module.fused_mixing = enable

    def compile_layers(self, enable: bool = True, **options) -> int:
        """Run each layer through ``torch.compile(**options)`` (``enable=False``: eager again); returns the number
        of layers. Weights, state-dict keys and deep copies are untouched (:meth:`DynaMixerLayer.compile`)."""
        layers = [module for module in self.modules() if isinstance(module, DynaMixerLayer)]
        for layer in layers:
            if enable:
                layer.compile(**options)
            else:
                layer.compile_options = None
        return len(layers)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups in depth order for timm's layer-wise lr decay and freezing: the patch embedding, then
        each layer (``network.<k>.<j>``) and transition (``network.<k>.proj``), or each ``network`` entry if
        ``coarse``; output norms with the last layer (timm's ``MATCH_PREV_GROUP``), the head after them."""
        return dict(stem=r'^patch_embed',
                    blocks=r'^network\.(\d+)' if coarse else [
                        (r'^network\.(\d+)\.(\d+)\.', None),
                        (r'^network\.(\d+)\.proj\.', (0,)),
                        (r'^norm', (99999,)),
                    ])

    def _take_indices(self, indices: Union[None, int, Sequence[int]]) -> List[int]:
        """timm's stage selection among the built stages: None all, an int n the last n, a sequence the stages
        named (negative from the end)."""
        num_stages = len(self.stage_positions)
        if indices is None:
            indices = num_stages
        if isinstance(indices, numbers.Integral):
            if not 0 < indices <= num_stages:
                raise ValueError(f'indices={indices}: the last n stages need 1 <= n <= {num_stages} (stages built)')
            return list(range(num_stages - indices, num_stages))
        return _stage_numbers(indices, num_stages, 'indices', f'{num_stages} stages are built')

    def forward_intermediates(self, x: torch.Tensor, indices: Union[None, int, Sequence[int]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """timm's feature extraction: the outputs of the stages ``indices`` (None: all; an int n: the last n),
        raw or, with ``norm``, through the stage's output norm where the model has one (the classifier: the
        last stage's ``norm``), as NCHW or NHWC maps. Returns them as a list if ``intermediates_only`` (which
        stops after the last one, as ``stop_early`` does), else ``(final, intermediates)`` with ``final`` the
        last built stage's normed NCHW map (what :meth:`forward_head` reads)."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt={output_fmt!r} is not supported: allowed 'NCHW', 'NHWC'")
        take = self._take_indices(indices)
        last = max(take) if stop_early or intermediates_only else len(self.stage_positions) - 1
        x = self.patch_embed(_check_images(x, self.in_chans))
        intermediates = []
        stage = 0
        for position in range(self.stage_positions[last] + 1):
            x = self.network[position](x)
            if position == self.stage_positions[stage]:
                if stage in take:
                    out = self.output_norm(stage)(x) if norm and self._has_output_norm(stage) else x
                    intermediates.append(_nchw(out) if output_fmt == 'NCHW' else out)
                stage += 1
        if intermediates_only:
            return intermediates
        if self._has_output_norm(last):
            x = self.output_norm(last)(x)
        return _nchw(x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and their output norms), the last kept stage's output
        norm if ``prune_norm``, the head and pooling if ``prune_head``. Returns ``indices`` as stage numbers."""
        take = self._take_indices(indices)
        last = max(take)
        for stage in range(last + 1, len(self.stage_positions)):
            if self._has_output_norm(stage):
                delattr(self, self._output_norm_name(stage))
        self.network = self.network[:self.stage_positions[last] + 1]
        del self.stage_positions[last + 1:], self.strides[last + 1:], self.feature_info[last + 1:]
        self.out_indices = tuple(sorted({i for i in self.out_indices if i <= last} | {last}))
        self.num_features = self.head_hidden_size = self.arch['embed_dims'][last]
        if prune_norm and self._has_output_norm(last):
            setattr(self, self._output_norm_name(last), nn.Identity())
        if prune_head:
            self.reset_classifier(0, '')
        return take

    # forward -----------------------------------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) images -> the normed maps (B, D_i, ceil(H / s_i), ceil(W / s_i)) of ``out_indices``."""
        return tuple(self.forward_intermediates(x, self.out_indices, norm=True, intermediates_only=True))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last (normed) map -> mean over positions ('avg' pooling) -> the linear head; ``pre_logits``
        stops before the head."""
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])
