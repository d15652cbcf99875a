"""Class activation maps of DynaMixer classifiers (mmpretrain ``ImageClassifier``), over pytorch-grad-cam
(``pip install grad-cam``, imported when used).

DynaMixer's layers and norms output channels-last maps (B, H, W, C); pytorch-grad-cam reads (B, C, H, W), and
mmpretrain's own ``tools/visualization/vis_cam.py`` passes any 4-D map through unchanged, so on DynaMixer it
would silently mix rows with channels: here the maps are permuted. A map cell covers ``stride`` x ``stride``
pixels from the top-left, the last row and column partly the zero padding the model adds to sides that are
not multiples of its strides, so the map is scaled to the area it covers and then cropped to the image.
"""
import math
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

DEFAULT_TARGET_LAYER = 'backbone.norm'  # the normed last map the head averages: Grad-CAM there is CAM

# pytorch-grad-cam's classes for the methods that weight the maps of the target layers.
METHODS = {'gradcam': 'GradCAM', 'gradcam++': 'GradCAMPlusPlus', 'xgradcam': 'XGradCAM', 'hirescam': 'HiResCAM',
           'layercam': 'LayerCAM', 'eigencam': 'EigenCAM', 'eigengradcam': 'EigenGradCAM'}
CLASS_AGNOSTIC = {'eigencam'}  # the first principal component of the map: no gradient, the same for every class


def channels_first(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ``reshape_transform`` for DynaMixer: (B, H, W, C) maps -> (B, C, H, W)."""
    if tensor.dim() != 4:
        raise ValueError(f'expected a (B, H, W, C) map from a DynaMixer layer, got shape {tuple(tensor.shape)}')
    return tensor.permute(0, 3, 1, 2)


def stage_map_layers(backbone) -> Dict[str, int]:
    """The backbone's modules (names relative to it) that output a stage's (B, H, W, C) map, with that stage:
    the patch embedding, each stage (``network.<p>``) and layer in it (``network.<p>.<j>``), each transition
    (the next stage's map) and each output norm."""
    layers = {'patch_embed': 0}
    for name, _ in backbone.named_modules():
        if match := re.fullmatch(r'norm(\d*)', name):
            layers[name] = int(match.group(1)) if match.group(1) else len(backbone.stage_positions) - 1
        elif match := re.fullmatch(r'network\.(\d+)(\.\d+)?', name):
            position = int(match.group(1))
            layers[name] = next(i for i, stage_position in enumerate(backbone.stage_positions)
                                if stage_position >= position)
    return layers


def layer_stage(backbone, name: str) -> int:
    """The stage whose map the backbone module ``name`` (relative to the backbone) outputs; ValueError for a
    module that outputs none (see :func:`stage_map_layers`)."""
    stages = stage_map_layers(backbone)
    if name not in stages:
        raise ValueError(f'backbone.{name} does not output a stage map')
    return stages[name]


def covered_side(side: int, backbone, stage: int) -> int:
    """Pixels that ``stage``'s map covers along an image side of ``side`` pixels: ceil to the 7-pixel patches,
    then to each stride-2 transition."""
    cells = math.ceil(side / backbone.patch_embed.patch_size)
    for i in range(stage):
        if backbone.strides[i + 1] > backbone.strides[i]:
            cells = math.ceil(cells / 2)
    return cells * backbone.strides[stage]


def resolve_target_layers(model, names: Sequence[str]) -> Tuple[List[torch.nn.Module], int]:
    """The modules named (as in ``model.named_modules()``) and the one stage whose map they all output;
    ValueError naming the allowed layers otherwise."""
    from ..models import DynaMixerNet

    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, DynaMixerNet):
        raise ValueError(f'class activation maps here are for DynaMixer classifiers; the model\'s backbone is '
                         f'{type(backbone).__name__}')
    if not names:
        raise ValueError('no target layers given: name at least one, e.g. backbone.norm')
    layers = {f'backbone.{name}': stage for name, stage in stage_map_layers(backbone).items()}
    stages = {}
    for name in names:
        if name not in layers:
            raise ValueError(f'target layer {name!r} does not output a DynaMixer stage map; allowed: '
                             f'{", ".join(layers)}')
        stages[name] = layers[name]
    if len(set(stages.values())) > 1:
        raise ValueError(f'target layers {list(names)} output maps of different stages ({stages}): their cells '
                         f'cover different pixels, choose layers of one stage')
    return [model.get_submodule(name) for name in names], next(iter(stages.values()))


def class_activation_map(model, inputs: torch.Tensor, target_layers: Sequence[str] = (DEFAULT_TARGET_LAYER,),
                         method: str = 'gradcam', target_category=None) -> Tuple[np.ndarray, int, torch.Tensor]:
    """The CAM (H, W) in [0, 1] of one preprocessed (1, 3, H, W) input for ``target_category`` (None: the
    predicted class), that class, and the model's class probabilities."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise ValueError(f'method {method!r} is not supported: allowed {", ".join(METHODS)}')
    if inputs.dim() != 4 or inputs.shape[0] != 1:
        raise ValueError(f'expected one preprocessed image as a (1, 3, H, W) tensor, got shape {tuple(inputs.shape)}')
    num_classes = model.head.num_classes
    if target_category is not None and not 0 <= target_category < num_classes:
        raise ValueError(f'target_category {target_category} is out of range: the model has {num_classes} '
                         f'classes, 0..{num_classes - 1}')
    layers, stage = resolve_target_layers(model, target_layers)
    height, width = inputs.shape[-2:]
    covered = (covered_side(width, model.backbone, stage), covered_side(height, model.backbone, stage))

    class CoveredAreaCAM(getattr(pytorch_grad_cam, METHODS[method])):
        # BaseCAM scales each layer's map to this size (an internal of pytorch-grad-cam, as of the pinned 1.5.5).
        def get_target_width_height(self, input_tensor):
            return covered  # (width, height) that the map's cells cover; cropped to the image below

    targets = None if target_category is None else [ClassifierOutputTarget(target_category)]
    with CoveredAreaCAM(model=model, target_layers=layers, reshape_transform=channels_first) as cam:
        grayscale = cam(input_tensor=inputs, targets=targets)[0]  # the model's forward: logits
        scores = cam.outputs[0].detach().softmax(dim=-1)
    grayscale = grayscale[:height, :width]
    grayscale = (grayscale - grayscale.min()) / max(float(grayscale.max() - grayscale.min()), 1e-7)
    category = int(scores.argmax()) if target_category is None else target_category
    return grayscale, category, scores


def draw(image_bgr: np.ndarray, grayscale: np.ndarray, min_side: int = 224) -> np.ndarray:
    """The image and the map laid over it, side by side (BGR), enlarged (nearest) to ``min_side`` when smaller."""
    import mmcv
    from pytorch_grad_cam.utils.image import show_cam_on_image

    image = image_bgr.astype(np.float32) / 255
    overlay = show_cam_on_image(image, grayscale, use_rgb=False)
    strip = np.concatenate([image_bgr, overlay], axis=1)
    if min(image_bgr.shape[:2]) < min_side:
        strip = mmcv.imrescale(strip, min_side / min(image_bgr.shape[:2]), interpolation='nearest')
    return strip
