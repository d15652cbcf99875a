"""Dense prediction: the mmdet and mmseg configs build with the real strides, train and validate through
tools/train.py on tiny COCO- and ADE20K-format data, odd input sizes give the documented strides, and a
neck whose in_channels disagree with the backbone fails with both lists in the message."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdynamixer.engine.checks import backbone_out_channels, backbone_out_strides, check_neck_in_channels
from mmdynamixer.models import DynaMixerNet
from mmdynamixer.testing import TINY_ARCH, build_mmpretrain_model, perturbed, tool_env, upstream_tool

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs' / 'dynamixer'
DET_CONFIGS = [f'{det}_dynamixer-{a}_fpn_1x_coco.py' for det in ('retinanet', 'mask-rcnn') for a in 'sml']
SEG_CONFIGS = [f'{seg}_dynamixer-{a}_{schedule}_ade20k-512x512.py'
               for seg, schedule in (('upernet', '8xb2-160k'), ('fpn', '8xb4-40k')) for a in 'sml']
# The S layout (transition after stage 0: strides 7, 14, 14, 14) at a few CPU seconds.
# The stage each dense config reads at stride 7 and at stride 14, and those stages' channels.
DENSE_OUTPUTS = {'s': ((0, 3), [192, 384]), 'm': ((1, 3), [256, 512]), 'l': ((0, 3), [256, 512])}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as the tool subprocesses run (OMP_NUM_THREADS=1): on a busy 2-core machine two
    OpenMP threads wait at every op for a descheduled sibling, which made forwards up to 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def build(cfg: Config):
    """Build ``cfg.model`` in the config's toolbox, without loading the pretrained checkpoint."""
    from mmengine.registry import init_default_scope
    scope = cfg.default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        import mmdet.models  # noqa: F401
        from mmdet.registry import MODELS
    else:
        import mmseg.models  # noqa: F401
        from mmseg.registry import MODELS
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


def smallest_anchor_sizes(anchor_head) -> list:
    """Side (square root of the area) of the smallest anchor on each level of an mmdet anchor head."""
    return [float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt().min())
            for b in anchor_head.prior_generator.gen_base_anchors()]


def pyramid_strides(cfg: Config):
    """The strides the heads are told their input levels have."""
    model = cfg.model
    if model.type == 'RetinaNet':
        return [model.bbox_head.anchor_generator.strides]
    if model.type == 'MaskRCNN':
        return [model.rpn_head.anchor_generator.strides, model.roi_head.bbox_roi_extractor.featmap_strides,
                model.roi_head.mask_roi_extractor.featmap_strides]
    if model.decode_head.type == 'UPerHead':
        return []  # UperNet does not take strides: check the neck's levels against the FPN's design
    return [model.decode_head.feature_strides]


# --------------------------------------------------------------------------------------------------
# (a) every config loads, builds, its pyramid has the strides its heads assume, and its optimizer
#     gives no weight decay to norms and biases.


@pytest.mark.parametrize('name', DET_CONFIGS + SEG_CONFIGS)
def test_config_builds_with_real_strides(name):
    cfg = load(name)
    arch = re.search(r'dynamixer-([sml])_', name).group(1)
    backbone = cfg.model.backbone
    out_indices, channels = DENSE_OUTPUTS[arch]
    # What every project config declares: the runner that every toolbox's tools build, atomic checkpoints, a
    # random stream per process.
    assert cfg.runner_type == 'DynaMixerRunner' and cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.randomness.diff_rank_seed is True
    assert backbone.type == 'mmpretrain.DynaMixer' and backbone.arch == arch and backbone.final_norm is False
    assert tuple(backbone.out_indices) == out_indices
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=f'checkpoints/dynamixer-{arch}_in1k.pth',
                                     prefix='backbone.')
    assert cfg.custom_imports.imports[0] == 'mmdynamixer'
    assert backbone_out_channels(backbone) == channels == list(cfg.model.neck.in_channels)
    assert backbone_out_strides(backbone) == [7, 14]
    check_neck_in_channels(cfg)

    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and 1e-4 <= optimizer.lr <= 2e-4 and optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    if cfg.default_scope == 'mmdet':
        assert cfg.train_cfg.max_epochs == 12
        assert [s for s in cfg.param_scheduler if s.type == 'MultiStepLR'][0].milestones == [8, 11]
    else:
        assert cfg.train_cfg.max_iters == (160000 if name.startswith('upernet') else 40000)
        assert tuple(cfg.model.data_preprocessor.size) == (518, 518)  # 512 crops, padded to 14's multiple
        assert cfg.model.data_preprocessor.test_cfg == dict(size_divisor=14)

    model = build(cfg).eval()
    # Only the outputs' norms exist: no classifier norm, no unused parameters under DDP.
    norms = {n.split('.')[0] for n, _ in model.backbone.named_parameters() if n.startswith('norm')}
    assert norms == {f'norm{i}' for i in out_indices}

    # An odd-sized image through backbone and neck: level k has ceil(H / s_k) x ceil(W / s_k) positions
    # for exactly the strides the anchor generators, RoI extractors and FPN head are configured with.
    height, width = 75, 101
    with torch.no_grad():
        levels = model.neck(model.backbone(torch.randn(1, 3, height, width)))
    sizes = [tuple(level.shape[2:]) for level in levels]
    assert sizes == [(ceil_div(height, s), ceil_div(width, s)) for s in [7, 14, 28, 56, 112][:len(levels)]]
    assert len(levels) == (5 if cfg.default_scope == 'mmdet' else 4)
    for strides in pyramid_strides(cfg):
        assert [(ceil_div(height, s), ceil_div(width, s)) for s in strides] == sizes[:len(strides)]

    if cfg.default_scope == 'mmdet':
        # Anchors keep ResNet's sizes: the smallest per level (sqrt of its area) is 32, 64, 128, 256, 512 px.
        head = model.bbox_head if cfg.model.type == 'RetinaNet' else model.rpn_head
        assert smallest_anchor_sizes(head) == pytest.approx([32, 64, 128, 256, 512], rel=1e-5)
    if cfg.model.get('decode_head', {}).get('type') == 'StrideFPNHead':
        convs = [sum(type(m).__name__ == 'ConvModule' for m in head) for head in model.decode_head.scale_heads]
        ups = [sum(type(m).__name__ == 'Upsample' for m in head) for head in model.decode_head.scale_heads]
        assert convs == [1, 1, 2, 3] and ups == [0, 1, 2, 3]  # 2x per step from 7 to 14, 28, 56

    from mmengine.optim import build_optim_wrapper
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    decay = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    block = model.backbone.network[0][0]
    assert decay[id(block.norm1.weight)] == 0 and decay[id(block.attn.mix_h.generate.bias)] == 0
    assert decay[id(block.attn.mix_h.generate.weight)] == 0.05 and decay[id(model.backbone.patch_embed.proj.weight)] \
        == 0.05


def ink_at_stride_7(model, num_classes: int):
    """Stands in for backbone, neck and head: logits on the grid of the real backbone's stride-7 map (its size
    read from a real forward), class 1 where a 7 x 7 cell of the input is bright, 0 elsewhere. A perfect
    segmentor at stride 7, so that only the config's padding and mmseg's resizing decide where its pixels land."""
    real_features = model.extract_feat

    def cells(inputs):
        height, width = real_features(inputs)[0].shape[2:]
        covered = torch.nn.functional.pad(inputs.mean(1, keepdim=True),
                                          (0, 7 * width - inputs.shape[3], 0, 7 * height - inputs.shape[2]))
        bright = torch.nn.functional.avg_pool2d(covered, 7) > 0.5
        logits = torch.full((inputs.shape[0], num_classes, height, width), -10.0)
        logits[:, 0] = torch.where(bright[:, 0], -5.0, 5.0)
        logits[:, 1] = torch.where(bright[:, 0], 5.0, -5.0)
        return logits

    model.extract_feat = lambda inputs: inputs
    model.decode_head.forward = cells


# M and L inherit S's data preprocessor (checked above).
@pytest.mark.parametrize('name', [name for name in SEG_CONFIGS if '-s_' in name]
                         + ['fpn_dynamixer-tiny_digit-scenes.py', 'upernet_dynamixer-tiny_digit-scenes.py'])
def test_segmentor_logits_land_on_their_pixels(name):
    """Images whose sides are not multiples of 7 or 14, each with a bright band on the stride-7 grid (one
    vertical, one horizontal, ending near the far sides): a segmentor that is exact at stride 7 must label exactly
    the band, in training (loss accuracy on the padded batch) and in testing (``test_step``'s prediction at the
    image's size). Resizing the logits of the backbone's own padding (7 * ceil(H / 7) pixels) onto the image
    shifts a band's far edge by up to 13 pixels. (Bands, not blocks: bilinear upsampling rounds a block's
    corners off wherever the logits are.)"""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    cfg = load(name)
    model = build(cfg).eval()
    height, width = 93, 121
    bands = torch.zeros(2, height, width, dtype=torch.long)
    bands[0, :, 70:112] = 1
    bands[1, 56:84, :] = 1
    ink_at_stride_7(model, cfg.model.decode_head.num_classes)

    def batch():
        images = [(band * 255).to(torch.uint8).expand(3, height, width) for band in bands]
        samples = [SegDataSample(gt_sem_seg=PixelData(data=band[None].clone()),
                                 metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
                   for band in bands]
        return dict(inputs=images, data_samples=samples)

    padded = model.data_preprocessor(batch(), training=True)
    with torch.no_grad():
        losses = model.decode_head.loss(model.extract_feat(padded['inputs']), padded['data_samples'],
                                        model.train_cfg)
    assert float(losses['acc_seg']) == 100.0

    with torch.no_grad():
        results = model.test_step(batch())
    for band, result in zip(bands, results):
        predicted = result.pred_sem_seg.data[0]
        assert predicted.shape == (height, width)
        assert torch.equal(predicted, band), f'{int((predicted != band).sum())} pixels off the band'


@pytest.mark.parametrize('name', ['mask-rcnn_dynamixer-s_fpn_1x_coco.py', 'mask-rcnn_dynamixer-tiny_fpn_digit-scenes.py'])
def test_mask_rcnn_roi_features_are_read_from_their_pyramid_cells(name):
    """The RoI heads see the pyramid: the config's RoI extractor (mmcv's RoIAlign) gives, for boxes under 112 px
    (level P7) and of 112-224 px (P14), what torchvision's RoIAlign reads from those levels. mmcv's kernels index
    raw NCHW memory: pyramid maps with channels-last strides (a permuted NHWC backbone output, kept by the FPN's
    convs) come out scrambled, and Mask R-CNN learned nothing on digit scenes (0.000 bbox and mask mAP)."""
    from torchvision.ops import roi_align

    cfg = load(name)
    model = build(cfg).eval()
    extractor = model.roi_head.bbox_roi_extractor
    images = torch.randn(2, 3, 141, 167)  # sides not multiples of 7 or 14
    small = torch.tensor([[0, 3.0, 5.0, 60.0, 41.0], [1, 50.0, 20.0, 90.0, 95.0]])  # sqrt(area) 45, 55: P7
    large = torch.tensor([[1, 2.0, 6.0, 162.0, 136.0]])  # sqrt(area) 144: P14
    with torch.no_grad():
        pyramid = model.extract_feat(images)
        for rois, level, stride in ((small, 0, 7), (large, 1, 14)):
            theirs = roi_align(pyramid[level].contiguous(), rois, extractor.roi_layers[0].output_size,
                               1 / stride, sampling_ratio=0, aligned=True)
            torch.testing.assert_close(extractor(pyramid[:extractor.num_inputs], rois), theirs)


SEMANTIC_FPN = 'fpn_dynamixer-tiny_digit-scenes.py'  # StrideFPNHead over P7-P56, as the ADE20K config


def scale_head_outputs(model, images):
    """The pyramid of a real forward and what each of StrideFPNHead's scale heads makes of its level."""
    outputs = []
    hooks = [head.register_forward_hook(lambda module, args, out: outputs.append(out))
             for head in model.decode_head.scale_heads]
    with torch.no_grad():
        pyramid = model.extract_feat(images)
        model.decode_head(pyramid)
    for hook in hooks:
        hook.remove()
    return pyramid, outputs


def test_stride_fpn_head_upsamples_every_level_to_the_stride_7_grid():
    """A 112 x 168 image (sides multiples of 56) gives levels of 16 x 24, 8 x 12, 4 x 6, 2 x 3: each scale head must
    bring its level to the stride-7 map's 16 x 24 by 2x steps (1, 2, 4, 8), so that the levels add up without a
    resize. mmseg's FPNHead, given the strides 7-56, builds 1, 1, 1, 2 steps and leaves P28 and P56 at 8 x 12."""
    model = build(load(SEMANTIC_FPN)).eval()
    pyramid, outputs = scale_head_outputs(model, torch.randn(1, 3, 112, 168))
    assert [tuple(level.shape[2:]) for level in pyramid] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [tuple(out.shape[2:]) for out in outputs] == [(16, 24)] * 4


def test_stride_fpn_head_levels_land_on_their_pixels():
    """Each level reaches the stride-7 grid on the pixels it was computed from. Sides that are not multiples of 56
    (here 238 x 182: 34 x 26 positions at stride 7, 5 x 4 at stride 56) round the coarse levels up, so upsampled
    they reach past the image (40 x 32 at stride 56): they must be cropped to 34 x 26, not squeezed onto it, which
    moves P56's far rows by 6 positions (42 px). The head's convolutions and classifier made identities, each level
    in turn holds its cells' pixel centres (rows in channel 0, columns in channel 1), and the head's output must hold
    the stride-7 cells' centres, 7 p + 3.5, away from the borders that upsampling clamps."""
    model = build(load(SEMANTIC_FPN)).eval()
    head = model.decode_head
    for scale_head in head.scale_heads:
        for k, module in enumerate(scale_head):
            if type(module).__name__ == 'ConvModule':
                scale_head[k] = torch.nn.Identity()
    head.cls_seg = lambda features: features
    height, width = 238, 182
    channels = head.in_channels[0]
    sizes = [(ceil_div(height, stride), ceil_div(width, stride)) for stride in head.feature_strides]
    rows, cols = sizes[0]
    expected_rows = (7 * torch.arange(rows) + 3.5)[8:rows - 8]
    expected_cols = (7 * torch.arange(cols) + 3.5)[8:cols - 8]
    for level, stride in enumerate(head.feature_strides):
        pyramid = [torch.zeros(1, channels, *size) for size in sizes]
        pyramid[level][0, 0] = (stride * torch.arange(sizes[level][0]) + stride / 2)[:, None]
        pyramid[level][0, 1] = (stride * torch.arange(sizes[level][1]) + stride / 2)[None, :]
        with torch.no_grad():
            out = head(pyramid)
        assert out.shape[2:] == (rows, cols)
        torch.testing.assert_close(out[0, 0, 8:rows - 8, 8:cols - 8],
                                   expected_rows[:, None].expand(-1, cols - 16), msg=f'level {level}: rows')
        torch.testing.assert_close(out[0, 1, 8:rows - 8, 8:cols - 8],
                                   expected_cols[None, :].expand(rows - 16, -1), msg=f'level {level}: columns')


@pytest.mark.parametrize('name', ['mask-rcnn_dynamixer-s_fpn_1x_coco.py', 'fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py'])
def test_pretrained_classifier_loads_into_dense_backbone(name, tmp_path):
    """The configs' init_cfg (Pretrained, prefix 'backbone.') loads a converted classifier checkpoint: every
    backbone tensor comes from it, the classifier's final norm as the last stage's output norm (norm3), except
    the new stride-7 output norm (norm0)."""
    from mmdynamixer.checkpoints import release_to_mmpretrain
    release = perturbed(DynaMixerNet(TINY_ARCH, num_classes=10)).state_dict()
    checkpoint = tmp_path / 'dynamixer-tiny_in1k.pth'
    torch.save(dict(state_dict=release_to_mmpretrain(release)), checkpoint)

    cfg = load(name)
    cfg.merge_from_dict({'model.backbone.arch._delete_': True, 'model.neck.in_channels': [16, 32],
                         'model.backbone.init_cfg.checkpoint': str(checkpoint),
                         **{f'model.backbone.arch.{k}': v for k, v in TINY_ARCH.items()}})
    init_cfg = cfg.model.backbone.init_cfg
    model = build(cfg)  # (drops init_cfg)
    model.backbone.init_cfg = init_cfg
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert set(loaded) - set(release) == {'norm0.weight', 'norm0.bias', 'norm3.weight', 'norm3.bias'}
    assert set(release) - set(loaded) == {'norm.weight', 'norm.bias', 'head.weight', 'head.bias'}
    for key in set(loaded) & set(release):
        torch.testing.assert_close(loaded[key], release[key], rtol=0, atol=0, msg=key)
    for name in ('weight', 'bias'):
        torch.testing.assert_close(loaded[f'norm3.{name}'], release[f'norm.{name}'], rtol=0, atol=0)


def backbone_from_classifier(cfg: Config, classifier_cfg: Config, folder: Path):
    """Builds ``cfg``'s model and initialises its backbone through its own ``Pretrained`` init_cfg from a classifier
    of ``classifier_cfg`` (weights moved off their initial values) saved under ``folder``. Returns the backbone's
    state dict and the classifier's backbone tensors (``backbone.`` prefix removed)."""
    classifier = perturbed(build_mmpretrain_model(classifier_cfg.model))
    checkpoint = folder / 'classifier.pth'
    torch.save(dict(state_dict=classifier.state_dict()), checkpoint)
    init_cfg = dict(cfg.model.backbone.init_cfg, checkpoint=str(checkpoint))
    model = build(cfg)  # (drops init_cfg)
    model.backbone.init_cfg = init_cfg
    model.init_weights()
    trained = {key[len('backbone.'):]: value for key, value in classifier.state_dict().items()
               if key.startswith('backbone.')}
    return model.backbone.state_dict(), trained


# The digit-scenes configs (the dense demo) and the COCO / ADE20K config each inherits.
DIGIT_SCENES = {'retinanet_dynamixer-tiny_fpn_digit-scenes.py': 'retinanet_dynamixer-s_fpn_1x_coco.py',
                'mask-rcnn_dynamixer-tiny_fpn_digit-scenes.py': 'mask-rcnn_dynamixer-s_fpn_1x_coco.py',
                'fpn_dynamixer-tiny_digit-scenes.py': 'fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py',
                'upernet_dynamixer-tiny_digit-scenes.py': 'upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py'}


@pytest.mark.parametrize('name', DIGIT_SCENES)
def test_digit_scenes_config_is_its_s_config_on_the_digits_classifiers_backbone(name, tmp_path):
    """The config keeps its S config's detector or segmentor (strides, anchors, RoI strides, heads), and its
    backbone is the digits classifier's arch, initialised from that classifier's checkpoint with
    ``prefix='backbone.'``: every backbone tensor comes from it, the classifier's final ``norm`` as ``norm3``,
    except the new stride-7 output norm ``norm0``."""
    cfg, coco_or_ade = load(name), load(DIGIT_SCENES[name])
    classifier_cfg = Config.fromfile(str(CONFIG_DIR / 'dynamixer-tiny_2xb64_digits.py'))
    backbone = cfg.model.backbone
    assert backbone.arch == classifier_cfg.model.backbone.arch
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/dynamixer-tiny_digits.pth',
                                     prefix='backbone.')
    assert backbone.out_indices == coco_or_ade.model.backbone.out_indices and backbone.final_norm is False
    assert backbone_out_strides(backbone) == [7, 14]
    assert pyramid_strides(cfg) == pyramid_strides(coco_or_ade)
    for head in ('bbox_head', 'rpn_head'):
        if head in cfg.model:
            assert cfg.model[head].anchor_generator == coco_or_ade.model[head].anchor_generator
    assert cfg.model.type == coco_or_ade.model.type
    assert cfg.model.get('decode_head', {}).get('type') == coco_or_ade.model.get('decode_head', {}).get('type')
    assert cfg.model.neck.num_outs == coco_or_ade.model.neck.num_outs
    check_neck_in_channels(cfg)
    assert cfg.runner_type == 'DynaMixerRunner' and cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/digit_scenes/'
        assert 'RandomFlip' not in [t['type'] for t in cfg[loader].dataset.pipeline]  # a mirrored digit

    loaded, trained = backbone_from_classifier(cfg, classifier_cfg, tmp_path)
    assert set(loaded) - set(trained) == {'norm0.weight', 'norm0.bias', 'norm3.weight', 'norm3.bias'}
    for key in set(loaded) & set(trained):
        torch.testing.assert_close(loaded[key], trained[key], rtol=0, atol=0, msg=key)
    for name in ('weight', 'bias'):
        torch.testing.assert_close(loaded[f'norm3.{name}'], trained[f'norm.{name}'], rtol=0, atol=0)


RESNET_BASELINES = ['retinanet_r18_fpn_digit-scenes.py', 'mask-rcnn_r18_fpn_digit-scenes.py',
                    'fpn_r18_digit-scenes.py', 'upernet_r18_digit-scenes.py']


@pytest.mark.parametrize('name', RESNET_BASELINES)
def test_resnet_baseline_is_the_digit_scenes_config_with_resnet18(name):
    """The dense demo's baselines differ from the DynaMixer configs in the backbone and what its strides need
    only: data, schedule, optimizer, neck and head widths are the same; the pyramid starts at stride 8 (RetinaNet)
    or 4 (Mask R-CNN, Semantic FPN, UperNet) with anchors of the same sizes, 32-512 px, and RoIs pooled from
    strides 4-32."""
    cfg = Config.fromfile(str(REPO / 'configs/resnet' / name))
    ours = load(name.replace('r18', 'dynamixer-tiny'))
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator', 'optim_wrapper', 'param_scheduler',
                'train_cfg', 'randomness'):
        assert cfg[key] == ours[key], key
    assert cfg.model.backbone.type in ('ResNet', 'ResNetV1c') and cfg.model.backbone.depth == 18
    if cfg.model.type == 'MaskRCNN':  # the same RoI heads but for their strides (before mmdet adds its cfgs)
        heads, our_heads = ({k: v for k, v in c.model.roi_head.items() if not k.endswith('_roi_extractor')}
                            for c in (cfg, ours))
        assert heads == our_heads
    model = build(cfg).eval()
    height, width = 97, 131
    with torch.no_grad():
        levels = model.backbone(torch.randn(1, 3, height, width))
        if cfg.model.get('neck'):
            assert cfg.model.neck.out_channels == ours.model.neck.out_channels
            levels = model.neck(levels)
    if cfg.model.type == 'RetinaNet':
        strides = cfg.model.bbox_head.anchor_generator.strides
        assert strides == [8, 16, 32, 64, 128]
        assert smallest_anchor_sizes(model.bbox_head) == pytest.approx([32, 64, 128, 256, 512], rel=1e-5)
    elif cfg.model.type == 'MaskRCNN':
        strides = cfg.model.rpn_head.anchor_generator.strides
        assert strides == [4, 8, 16, 32, 64]
        assert smallest_anchor_sizes(model.rpn_head) == pytest.approx([32, 64, 128, 256, 512], rel=1e-5)
        for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
            assert cfg.model.roi_head[extractor].featmap_strides == [4, 8, 16, 32]
    elif cfg.model.decode_head.type == 'UPerHead':
        strides = [4, 8, 16, 32]
        # UperNet straight on the four stages, as mmseg's upernet_r50; the auxiliary head on stride 16.
        assert cfg.model.decode_head.in_channels == [64, 128, 256, 512]
        assert cfg.model.decode_head.channels == ours.model.decode_head.channels
        assert (cfg.model.auxiliary_head.in_index, cfg.model.auxiliary_head.in_channels) == (2, 256)
        assert cfg.model.data_preprocessor.size_divisor == 32
        assert cfg.model.data_preprocessor.test_cfg == dict(size_divisor=32)
    else:
        strides = cfg.model.decode_head.feature_strides
        assert cfg.model.decode_head.type == 'FPNHead' and strides == [4, 8, 16, 32]
        # Inputs padded to ResNet's coarsest stride in training and test, as ours to 14: same alignment.
        assert cfg.model.data_preprocessor.size_divisor == 32
        assert cfg.model.data_preprocessor.test_cfg == dict(size_divisor=32)
    assert [tuple(level.shape[2:]) for level in levels] == [(ceil_div(height, s), ceil_div(width, s))
                                                           for s in strides]


def test_resnet_segmentor_with_the_plain_stem_starts_from_the_resnet18_digits_classifier(tmp_path):
    """The Semantic FPN baseline with mmseg's plain ResNet (the classifier's 7x7 stem), all else as the ResNetV1c
    baseline: the ResNet-18 digits classifier initialises every tensor of its backbone."""
    cfg = Config.fromfile(str(REPO / 'configs/resnet/fpn_r18-plain-stem_digit-scenes.py'))
    v1c = Config.fromfile(str(REPO / 'configs/resnet/fpn_r18_digit-scenes.py'))
    assert cfg.model.backbone.type == 'ResNet' and v1c.model.backbone.type == 'ResNetV1c'
    assert {k: v for k, v in cfg.model.items() if k != 'backbone'} == {k: v for k, v in v1c.model.items()
                                                                     if k != 'backbone'}
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/resnet18_digits.pth',
                                               prefix='backbone.')
    classifier_cfg = Config.fromfile(str(REPO / 'configs/resnet/resnet18_2xb64_digits.py'))
    loaded, trained = backbone_from_classifier(cfg, classifier_cfg, tmp_path)
    assert set(loaded) == set(trained)
    for key in loaded:
        torch.testing.assert_close(loaded[key], trained[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize('name', ['retinanet_r18_fpn_digit-scenes.py', 'mask-rcnn_r18_fpn_digit-scenes.py',
                                  'upernet_r18_digit-scenes.py'])
def test_resnet_baseline_starts_from_the_resnet18_digits_classifier(name, tmp_path):
    """The same init policy as ours: mmpretrain's ResNet-18 trained as our digits classifier (same data, pipeline
    and schedule) initialises the baseline's backbone, every tensor of it (BN statistics included)."""
    classifier_cfg = Config.fromfile(str(REPO / 'configs/resnet/resnet18_2xb64_digits.py'))
    ours = Config.fromfile(str(CONFIG_DIR / 'dynamixer-tiny_2xb64_digits.py'))
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                'custom_hooks', 'auto_scale_lr'):
        assert classifier_cfg[key] == ours[key], key
    assert classifier_cfg.model.head == dict(ours.model.head, in_channels=512)
    assert classifier_cfg.model.train_cfg == ours.model.train_cfg  # Mixup / CutMix

    cfg = Config.fromfile(str(REPO / 'configs/resnet' / name))
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/resnet18_digits.pth',
                                               prefix='backbone.')
    loaded, trained = backbone_from_classifier(cfg, classifier_cfg, tmp_path)
    assert set(loaded) == set(trained)
    for key in loaded:
        torch.testing.assert_close(loaded[key], trained[key], rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------------------------------
# (b) a real training iteration and a validation pass through tools/train.py.


def _coco_split(root: Path, split: str, sizes, rng) -> None:
    from PIL import Image, ImageDraw
    folder = root / 'images' / split
    folder.mkdir(parents=True)
    images, annotations = [], []
    for image_id, (h, w) in enumerate(sizes, start=1):
        image = Image.fromarray(rng.integers(90, 140, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        for category, colour in ((1, (230, 40, 40)), (3, (40, 40, 230))):
            bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            # A diamond: the mask is not its box.
            polygon = [x0 + bw / 2, y0, x0 + bw, y0 + bh / 2, x0 + bw / 2, y0 + bh, x0, y0 + bh / 2]
            draw.polygon(polygon, fill=colour)
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, category_id=category,
                                    bbox=[x0, y0, bw, bh], area=bw * bh / 2, iscrowd=0, segmentation=[polygon]))
        image.save(folder / f'{image_id:04d}.jpg')
        images.append(dict(id=image_id, file_name=f'{image_id:04d}.jpg', height=h, width=w))
    (root / 'annotations').mkdir(exist_ok=True)
    # The configs' datasets select categories by name (metainfo.classes): two of COCO's.
    categories = [dict(id=1, name='person'), dict(id=3, name='car')]
    (root / 'annotations' / f'{split}.json').write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories)))


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('coco')
    rng = np.random.default_rng(0)
    _coco_split(root, 'train', [(121, 167), (113, 171)], rng)
    _coco_split(root, 'val', [(117, 160), (125, 166)], rng)
    return root


@pytest.fixture(scope='session')
def tiny_ade(tmp_path_factory) -> Path:
    from PIL import Image
    root = tmp_path_factory.mktemp('ade')
    rng = np.random.default_rng(1)
    for split, sizes in (('training', [(97, 131), (90, 120), (101, 127), (88, 140)]),
                         ('validation', [(95, 129), (83, 118)])):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            # Labels 1..3 in vertical bands (0 is "other", ignored after reduce_zero_label), images coloured by label.
            label = np.zeros((h, w), np.uint8)
            for k, start in enumerate(sorted(rng.integers(0, w, 3))):
                label[:, start:] = k + 1
            label[: h // 6] = 0
            pixels = np.stack([label * 60, 200 - label * 50, np.full_like(label, 90)], -1)
            pixels = (pixels + rng.integers(0, 30, pixels.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / 'images' / split / f'ADE_{split}_{i:08d}.jpg')
            Image.fromarray(label).save(root / 'annotations' / split / f'ADE_{split}_{i:08d}.png')
    return root


def tiny_backbone_options():
    """--cfg-options: TINY_ARCH without pretrained weights, and a 32-channel FPN over its 16/32-channel maps."""
    opts = ['model.backbone.arch._delete_=True', 'model.backbone.init_cfg=None', 'model.backbone.drop_path_rate=0.1']
    # --cfg-options lists: [1,1,1,1], [True,False,False,False].
    opts += [f'model.backbone.arch.{key}=[{",".join(str(v) for v in value)}]' for key, value in TINY_ARCH.items()]
    return opts + ['model.neck.in_channels=[16,32]', 'model.neck.out_channels=32']


def run_tool(tool: Path, config: str, work: Path, options, env, extra=()):
    cmd = [sys.executable, str(tool), str(CONFIG_DIR / config), *extra, '--work-dir', str(work),
           '--cfg-options', *options]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    return log


def pipeline_option(cfg: Config, loader: str, transform: str, key: str, value: str) -> str:
    """``<loader>.dataset.pipeline.<i>.<key>=<value>`` for the first ``transform`` of that pipeline."""
    types = [t['type'] for t in cfg[loader].dataset.pipeline]
    return f'{loader}.dataset.pipeline.{types.index(transform)}.{key}={value}'


def coco_options(root: Path, mask: bool):
    cfg = load(f'{"mask-rcnn" if mask else "retinanet"}_dynamixer-s_fpn_1x_coco.py')
    opts = tiny_backbone_options()
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.dataset.ann_file=annotations/{split}.json',
                 f'{loader}.dataset.data_prefix.img=images/{split}/', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False', f'{loader}.dataset.metainfo.classes=[person,car]']
    # Images of about 130 x 180 (odd sizes after the resize, e.g. 130 x 179).
    opts += [pipeline_option(cfg, 'train_dataloader', 'Resize', 'scale', '(180,130)'),
             pipeline_option(cfg, 'val_dataloader', 'Resize', 'scale', '(180,130)'),
             'train_dataloader.batch_size=2', f'val_evaluator.ann_file={root}/annotations/val.json',
             'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
             'randomness.seed=0']
    if mask:
        opts += ['model.rpn_head.in_channels=32', 'model.rpn_head.feat_channels=32',
                 'model.roi_head.bbox_roi_extractor.out_channels=32', 'model.roi_head.bbox_head.in_channels=32',
                 'model.roi_head.bbox_head.fc_out_channels=64', 'model.roi_head.mask_roi_extractor.out_channels=32',
                 'model.roi_head.mask_head.in_channels=32', 'model.roi_head.mask_head.conv_out_channels=32',
                 'model.roi_head.mask_head.num_convs=1', 'model.roi_head.bbox_head.num_classes=2',
                 'model.roi_head.mask_head.num_classes=2', 'model.test_cfg.rcnn.score_thr=0.0']
    else:
        opts += ['model.bbox_head.in_channels=32', 'model.bbox_head.feat_channels=32',
                 'model.bbox_head.stacked_convs=1', 'model.bbox_head.num_classes=2', 'model.test_cfg.score_thr=0.0']
    return opts


def losses(log: str, key: str = 'loss'):
    values = [float(v) for v in re.findall(rf'\s{key}: ([-\d.naif]+)', log)]
    assert values, f'no {key} logged:\n{log[-3000:]}'
    assert all(math.isfinite(v) for v in values), values
    return values


RETINANET = 'retinanet_dynamixer-s_fpn_1x_coco.py'


@pytest.fixture(scope='module')
def retinanet_run(tmp_path_factory, tiny_coco):
    """One epoch (one iteration) of RetinaNet training with validation, through mmdet's own tools/train.py:
    (log, work dir, options)."""
    work = tmp_path_factory.mktemp('retinanet') / 'work'
    options = coco_options(tiny_coco, mask=False)
    return run_tool(upstream_tool('mmdet', 'train.py'), RETINANET, work, options, tool_env()), work, options


def test_retinanet_trains_and_validates(retinanet_run):
    log, work, _ = retinanet_run
    assert re.search(r'Epoch\(train\)\s+\[1\]\[1/1\].*loss_cls: [\d.]+\s+loss_bbox: [\d.]+', log), log[-3000:]
    losses(log)
    assert re.search(r'Epoch\(val\) \[1\]\[2/2\]\s+coco/bbox_mAP: [\d.]+', log), log[-3000:]
    assert (work / 'epoch_1.pth').exists()


def test_retinanet_checkpoint_through_test_py(retinanet_run, tmp_path):
    """Our tools/test.py evaluates the checkpoint mmdet's train.py wrote (with its message hub, weights-only)."""
    _, work, options = retinanet_run
    options = [o.replace('val_dataloader', 'test_dataloader').replace('val_evaluator', 'test_evaluator')
               for o in options if o.startswith(('model.', 'val_'))]
    log = run_tool(REPO / 'tools/test.py', RETINANET, tmp_path / 'test', options, tool_env(),
                   extra=[str(work / 'epoch_1.pth')])
    assert re.search(r'Epoch\(test\) \[2/2\]\s+coco/bbox_mAP: [\d.]+', log), log[-3000:]


def test_mask_rcnn_trains_and_validates(tmp_path, tiny_coco):
    log = run_tool(REPO / 'tools/train.py', 'mask-rcnn_dynamixer-s_fpn_1x_coco.py', tmp_path / 'work',
                   coco_options(tiny_coco, True), tool_env())
    assert re.search(r'Epoch\(train\)\s+\[1\]\[1/1\].*loss_rpn_cls: [\d.]+.*loss_mask: [\d.]+', log), log[-3000:]
    losses(log)
    assert re.search(r'Epoch\(val\) \[1\]\[2/2\]\s+coco/bbox_mAP: [\d.]+.*coco/segm_mAP: [\d.]+', log), log[-3000:]
    assert (tmp_path / 'work' / 'epoch_1.pth').exists()


def test_upernet_trains_and_validates(tmp_path, tiny_ade):
    config = 'upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py'
    cfg = load(config)
    options = tiny_backbone_options() + [
        'model.decode_head.in_channels=[32,32,32,32]', 'model.decode_head.channels=32',
        'model.auxiliary_head.in_channels=32', 'model.auxiliary_head.channels=16',
        'model.data_preprocessor.size=(64,64)',
        pipeline_option(cfg, 'train_dataloader', 'RandomResize', 'scale', '(160,80)'),
        pipeline_option(cfg, 'train_dataloader', 'RandomCrop', 'crop_size', '(64,64)'),
        pipeline_option(cfg, 'val_dataloader', 'Resize', 'scale', '(160,100)'),
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=1', 'randomness.seed=0',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1']
    for loader in ('train_dataloader', 'val_dataloader'):
        options += [f'{loader}.dataset.data_root={tiny_ade}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False']
    log = run_tool(upstream_tool('mmseg', 'train.py'), config, tmp_path / 'work', options, tool_env())
    assert re.search(r'Iter\(train\) \[2/2\].*decode\.loss_ce: [\d.]+.*aux\.loss_ce: [\d.]+', log), log[-3000:]
    assert len(losses(log)) == 2
    assert re.search(r'Iter\(val\) \[2/2\]\s+aAcc: [\d.]+\s+mIoU: [\d.]+', log), log[-3000:]
    assert (tmp_path / 'work' / 'iter_2.pth').exists()


# --------------------------------------------------------------------------------------------------
# (c) odd sizes through the S backbone give maps at strides 7 and 14 (ceil division).


@pytest.mark.parametrize('size', [(225, 333), (512, 512), (800, 1344)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_s_backbone_odd_sizes(size):
    torch.manual_seed(0)
    model = DynaMixerNet('s', num_classes=0, out_indices=(0, 1, 2, 3), final_norm=False).eval()
    height, width = size
    with torch.no_grad():
        outs = model.forward_features(torch.randn(1, 3, height, width))
    expected = [(1, 192, ceil_div(height, 7), ceil_div(width, 7))] + \
        [(1, 384, ceil_div(height, 14), ceil_div(width, 14))] * 3
    assert [tuple(o.shape) for o in outs] == expected
    assert model.strides == [7, 14, 14, 14]
    assert all(torch.isfinite(o).all() for o in outs)


# --------------------------------------------------------------------------------------------------
# (d) a neck whose in_channels disagree with the backbone fails with both lists named.


def test_neck_in_channels_mismatch_names_both():
    cfg = load('retinanet_dynamixer-s_fpn_1x_coco.py')
    check_neck_in_channels(cfg)
    cfg.model.neck.in_channels = [192, 192]
    with pytest.raises(ValueError, match=re.escape('in_channels=[192, 192]')) as error:
        check_neck_in_channels(cfg)
    assert '[192, 384]' in str(error.value) and "arch='s'" in str(error.value)

    # M reads stages 1 and 3: S's channels are wrong for it.
    cfg = load('mask-rcnn_dynamixer-m_fpn_1x_coco.py')
    cfg.model.neck.in_channels = [192, 384]
    with pytest.raises(ValueError, match=r'in_channels=\[192, 384\].*channels \[256, 512\]'):
        check_neck_in_channels(cfg)

    # A --cfg-options style override of the arch and out_indices without the neck.
    cfg = load('upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py')
    cfg.merge_from_dict({'model.backbone.arch._delete_': True, **{f'model.backbone.arch.{k}': v
                                                                  for k, v in TINY_ARCH.items()}})
    with pytest.raises(ValueError, match=r'in_channels=\[192, 384\].*channels \[16, 32\]'):
        check_neck_in_channels(cfg)
    cfg.model.neck.in_channels = [16, 32]
    check_neck_in_channels(cfg)
    cfg.model.backbone.out_indices = (0, 1, 3)
    with pytest.raises(ValueError, match=r'out_indices=\(0, 1, 3\).*channels \[16, 32, 32\]'):
        check_neck_in_channels(cfg)

    # Without a neck, mmseg's decode head reads the backbone through in_index.
    cfg = Config(dict(model=dict(backbone=dict(type='mmpretrain.DynaMixer', arch='l', out_indices=(0, 3)),
                                 decode_head=dict(type='FCNHead', in_channels=384, in_index=1))))
    with pytest.raises(ValueError, match=r'in_channels=384.*channels \[256, 512\]\. Set in_channels=512'):
        check_neck_in_channels(cfg)
    # Other backbones are not checked.
    check_neck_in_channels(Config(dict(model=dict(backbone=dict(type='ResNet'), neck=dict(in_channels=[1])))))


def test_neck_mismatch_refused_before_building(tmp_path):
    """The runner checks the merged config, whichever tool builds it (here mmdet's own train.py): the error comes
    first, not from inside the first forward."""
    run = subprocess.run([sys.executable, str(upstream_tool('mmdet', 'train.py')), str(CONFIG_DIR / RETINANET),
                          '--work-dir', str(tmp_path), '--cfg-options', 'model.neck.in_channels=[192,192]'],
                         cwd=REPO, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert ("model.neck (FPN) has in_channels=[192, 192], but the backbone DynaMixer arch='s' out_indices=(0, 3) "
            'returns maps with channels [192, 384]') in run.stderr
    assert not list(tmp_path.glob('*/vis_data'))  # no Runner was built
