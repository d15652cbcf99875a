"""The backbone in the OpenMMLab registry, the configs and the recipe they encode."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmdynamixer.testing import TINY_ARCH

# The classification configs (the dense ones are built by test_dense.py with their toolboxes).
CONFIGS = sorted(str(p) for p in (Path(__file__).parents[1] / 'configs/dynamixer').glob('dynamixer-*.py'))
RECIPES = {'s': ('dynamixer-s_8xb256_in1k.py', 256, 0.1, 248),
           'm': ('dynamixer-m_8xb128_in1k.py', 128, 0.1, 248),
           'l': ('dynamixer-l_8xb64_in1k.py', 64, 0.3, 256)}
# The spec's figures (1000-class head, 224 x 224), measured on the authors' release.
RELEASE = {'s': (26.27, 7.32), 'm': (57.13, 17.02), 'l': (97.82, 27.40)}


def build_model(cfg):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_registered_for_every_toolbox():
    """mmdet and mmseg configs name it ``mmpretrain.DynaMixer``."""
    import mmdynamixer  # noqa: F401
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = DET_MODELS.build(dict(type='mmpretrain.DynaMixer', arch=TINY_ARCH, out_indices=(0, 1, 2, 3),
                                         final_norm=False))
    outs = backbone(torch.randn(1, 3, 64, 80))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 10, 12), (1, 32, 5, 6), (1, 32, 5, 6), (1, 32, 5, 6)]


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: Path(p).name)
def test_config_loads_and_builds(config):
    cfg = Config.fromfile(config)
    model = build_model(cfg.model)
    assert type(model.backbone).__name__ == 'DynaMixer'
    images = torch.zeros(2, 3, 56, 56) if 'digits' in config else None
    if images is not None:
        with torch.no_grad():
            assert model(images, mode='tensor').shape == (2, cfg.model.head.num_classes)


@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_recipe(arch, repo):
    name, batch, drop_path, resize = RECIPES[arch]
    cfg = Config.fromfile(repo / 'configs/dynamixer' / name)
    assert cfg.model.backbone.arch == arch and cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999))
    assert cfg.train_cfg.max_epochs == 310
    assert cfg.custom_hooks[0].type == 'EMAHook' and cfg.custom_hooks[0].momentum == pytest.approx(1 - 0.99996)
    assert cfg.custom_hooks[1].type == 'FiniteLossHook'
    test_resize = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'ResizeEdge'][0]
    assert test_resize['scale'] == resize and test_resize['interpolation'] == 'bicubic'
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]


def test_no_weight_decay_on_norms_and_biases(repo):
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py')
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.in_channels = 32
    model = build_model(cfg.model)
    cfg.optim_wrapper.type = 'OptimWrapper'
    del cfg.optim_wrapper.loss_scale
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    for name, p in model.named_parameters():
        assert decay[id(p)] == (0.0 if p.ndim == 1 else 0.05), name


def test_lr_schedule_equals_timm_cosine(repo):
    """The release steps timm's CosineLRScheduler per epoch; our mmengine scheduler must give the same LRs."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    from timm.scheduler import CosineLRScheduler
    import mmdynamixer  # noqa: F401

    cfg = Config.fromfile(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py')
    ours_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    timm_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0], optimizer=OptimWrapper(ours_opt)))
    timm_scheduler = CosineLRScheduler(timm_opt, t_initial=300, lr_min=1e-5, warmup_t=20, warmup_lr_init=1e-6)
    for epoch in range(310):
        timm_scheduler.step(epoch)
        assert ours_opt.param_groups[0]['lr'] == pytest.approx(timm_opt.param_groups[0]['lr'], rel=1e-9), epoch
        scheduler.step()
    assert ours_opt.param_groups[0]['lr'] == pytest.approx(1e-5)


@pytest.mark.parametrize('arch', ['s', 'm', 'l'])
def test_params_and_flops_match_release(arch, repo):
    from mmengine.analysis import FlopAnalyzer
    cfg = Config.fromfile(repo / 'configs/dynamixer' / RECIPES[arch][0])
    model = build_model(cfg.model).eval()
    params, flops_g = RELEASE[arch]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == params
    analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 224, 224),))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analyzer.total() / 1e9 == pytest.approx(flops_g, abs=0.01)


def test_frozen_stages():
    backbone = build_model(dict(type='DynaMixer', arch=TINY_ARCH, out_indices=(0, 1, 2, 3), final_norm=False,
                                frozen_stages=2)).train()
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in backbone.named_parameters()
                      if n.split('.')[0] in ('patch_embed', 'norm0', 'norm1') or n.split('.')[:2] in (
                          ['network', '0'], ['network', '1'], ['network', '2'])}
    assert not backbone.network[2].training and backbone.network[3].training
    with pytest.raises(ValueError, match=r'frozen_stages=5 is out of range: allowed -1 .* to 4'):
        build_model(dict(type='DynaMixer', arch=TINY_ARCH, frozen_stages=5))


@pytest.fixture(scope='module')
def imagenet_1k_classes(tmp_path_factory):
    """data/imagenet in the folder layout: 1000 wnid folders with one small image each, per split."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp('imagenet1k')
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    for split in ('train', 'val'):
        for c in range(1000):
            folder = root / split / f'n{c:08d}'
            folder.mkdir(parents=True)
            image.save(folder / f'{c}.JPEG')
    return root


@pytest.mark.parametrize('layout', ['folders', 'annotation files'])
def test_recipe_pipelines_run_on_imagenet_layouts(imagenet_1k_classes, repo, layout):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    root = imagenet_1k_classes
    if layout == 'annotation files':
        root = root.parent / 'imagenet1k_ann'
        if not root.exists():
            root.mkdir()
            (root / 'meta').mkdir()
            for split in ('train', 'val'):
                (root / split).symlink_to(imagenet_1k_classes / split)
                # mmpretrain's annotation files: a sample list, one "path label" per line.
                lines = [f'n{c:08d}/{c}.JPEG {c}' for c in range(0, 1000, 7)]
                (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    cfg = Config.fromfile(repo / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            dataset = DATASETS.build(dict(loader.dataset, data_root=str(root)))
            assert len(dataset) == (1000 if layout == 'folders' else 143)
            sample = dataset[5]
            assert tuple(sample['inputs'].shape) == (3, 224, 224)
            assert sample['data_samples'].gt_label.item() == (5 if layout == 'folders' else 35)
