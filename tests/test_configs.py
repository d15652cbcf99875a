"""The configs: what every one declares, the recipes against the spec's table and the release's own library
(timm), the classification configs built with mmpretrain; and the backbone as the OpenMMLab registries hold it.
(The dense configs are built and trained a few iterations in test_dense.py.)"""
import ast
import copy
import importlib
import re
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

import mmdynamixer  # noqa: F401  (registers what the configs name)
from mmdynamixer.testing import TINY_ARCH, build_mmpretrain_model

CONFIG_ROOT = Path(__file__).resolve().parents[1] / 'configs'
CONFIGS = sorted(p.name for p in (CONFIG_ROOT / 'dynamixer').glob('*.py'))
CLASSIFICATION = [name for name in CONFIGS if name.startswith('dynamixer-')]
RECIPES = {'s': 'dynamixer-s_8xb256_in1k.py', 'm': 'dynamixer-m_8xb128_in1k.py', 'l': 'dynamixer-l_8xb64_in1k.py'}
# /work/shared/docs/dynamixer-spec.md: sections 3 (arch table, reference figures) and 4 (the ImageNet-1k recipe).
SPEC = {
    's': dict(gpus=8, batch_per_gpu=256, drop_path=0.1, crop_pct=0.9, layers=(4, 3, 8, 3), head_in=384,
              params_m=26.27, flops_g=7.32),
    'm': dict(gpus=8, batch_per_gpu=128, drop_path=0.1, crop_pct=0.9, layers=(4, 3, 14, 3), head_in=512,
              params_m=57.13, flops_g=17.02),
    'l': dict(gpus=8, batch_per_gpu=64, drop_path=0.3, crop_pct=0.875, layers=(8, 8, 16, 4), head_in=512,
              params_m=97.82, flops_g=27.40),
}
GPUS_X_BATCH = re.compile(r'_(\d+)xb(\d+)[-_]')


@lru_cache(maxsize=None)
def _read(name: str) -> Config:
    return Config.fromfile(CONFIG_ROOT / 'dynamixer' / name)


def load(name: str) -> Config:
    """A config of configs/dynamixer (read once per session), as a copy the caller may change."""
    return copy.deepcopy(_read(name))


def ancestors(path: Path) -> set:
    """Every file a config inherits from, directly or not: paths, or 'package::path' for a toolbox's."""
    found = set()
    tree = ast.parse(path.read_text())
    bases = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(target, ast.Name) and target.id == '_base_' for target in node.targets)]
    bases = bases[0] if bases else []
    for base in ([bases] if isinstance(bases, str) else bases):
        if '::' in base:
            found.add(base)
        else:
            base_path = (path.parent / base).resolve()
            found |= {base_path} | ancestors(base_path)
    return found


def flatten(tree, prefix=''):
    """{'a.b.0.c': value} for every leaf of a nested config."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f'{prefix}{key}.').items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in flatten(sub, f'{prefix}{i}.').items()}
    return {prefix[:-1]: tree}


def run_pipeline(pipeline, image_path):
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Compose(pipeline)(dict(img_path=str(image_path), gt_label=1))


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_inherits_the_plugin_runtime(name):
    """Reading the dense configs' toolbox bases takes seconds each (test_dense.py loads them): here their
    inheritance, and the declarations of what they inherit."""
    assert CONFIG_ROOT / '_base_' / 'dynamixer_runtime.py' in ancestors(CONFIG_ROOT / 'dynamixer' / name)


def test_plugin_runtime_names_the_runner_and_the_package():
    from mmengine.registry import RUNNERS
    from mmdynamixer.engine import DynaMixerRunner
    cfg = Config.fromfile(CONFIG_ROOT / '_base_' / 'dynamixer_runtime.py')
    assert cfg.custom_imports == dict(imports=['mmdynamixer'], allow_failed_imports=False)
    assert RUNNERS.get(cfg.runner_type) is DynaMixerRunner


@pytest.mark.parametrize('name', CLASSIFICATION)
def test_classification_config_declares_the_plugin(name):
    """Whichever tool builds the Runner gets mmdynamixer's Runner (config checks, resume, AMP/DDP fallbacks) and
    atomic checkpoints; the Runner's config checks pass."""
    from mmengine.registry import HOOKS, RUNNERS
    from mmdynamixer.engine import AtomicCheckpointHook, DynaMixerRunner
    from mmdynamixer.engine.checks import check_config
    cfg = load(name)
    assert 'mmdynamixer' in cfg.custom_imports.imports and not cfg.custom_imports.allow_failed_imports
    assert RUNNERS.get(cfg.runner_type) is DynaMixerRunner
    assert issubclass(HOOKS.get(cfg.default_hooks.checkpoint.type), AtomicCheckpointHook)
    assert cfg.randomness == dict(seed=42, diff_rank_seed=True, deterministic=False)  # a stream per process
    cfg.load_from = None  # a file a run makes first (the ft84 config's resampled checkpoint), checked at run time
    check_config(cfg)


@pytest.mark.parametrize('name', CLASSIFICATION)
def test_classification_data_is_checked(name):
    """Image files come from checked image folders, loaded by a loader that skips an unreadable image in training
    and stops at one in evaluation; no unchecked loading anywhere in a pipeline. (CIFAR's images are arrays
    inside its pickles: nothing to load.)"""
    from mmengine.registry import TRANSFORMS
    from mmpretrain.datasets import CIFAR10
    from mmpretrain.registry import DATASETS
    from mmdynamixer.datasets import CheckedCustomDataset, CheckedImageNet, CheckedLoadImageFromFile
    cfg = load(name)
    for loader, policy in (('train_dataloader', 'skip'), ('val_dataloader', 'error'), ('test_dataloader', 'error')):
        dataset = cfg[loader].dataset
        if issubclass(DATASETS.get(dataset.type), CIFAR10):  # CIFAR100 too
            assert not [t for t in dataset.pipeline if 'Load' in t['type']], loader
            continue
        assert issubclass(DATASETS.get(dataset.type), (CheckedImageNet, CheckedCustomDataset)), loader
        loads = [t for t in dataset.pipeline if 'Load' in t['type']]
        assert len(loads) == 1 and loads[0] is dataset.pipeline[0], loader
        assert TRANSFORMS.get(loads[0]['type']) is CheckedLoadImageFromFile, loader
        assert loads[0]['on_unreadable'] == policy, loader


@pytest.mark.parametrize('name', CLASSIFICATION)
def test_batch_and_auto_scale_lr_agree_with_the_name(name):
    """``<gpus>xb<batch>`` in the name is the per-GPU batch, and the total batch the lr is meant for is
    ``auto_scale_lr.base_batch_size`` (what ``--auto-scale-lr`` scales from); off unless asked for."""
    gpus, batch = map(int, GPUS_X_BATCH.search(name).groups())
    cfg = load(name)
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr == dict(base_batch_size=gpus * batch, enable=False)


@pytest.mark.parametrize('arch', RECIPES)
def test_recipe_batch_is_the_releases(arch):
    cfg = load(RECIPES[arch])
    spec = SPEC[arch]
    assert cfg.train_dataloader.batch_size == cfg.val_dataloader.batch_size == spec['batch_per_gpu']
    assert cfg.auto_scale_lr.base_batch_size == spec['gpus'] * spec['batch_per_gpu']


@pytest.mark.parametrize('arch', RECIPES)
def test_recipes_are_built_from_the_bases(arch):
    """Each recipe inherits a model base for its arch and the shared bases, never another runnable config."""
    inherited = ancestors(CONFIG_ROOT / 'dynamixer' / RECIPES[arch])
    assert CONFIG_ROOT / '_base_' / 'models' / f'dynamixer-{arch}.py' in inherited
    assert {CONFIG_ROOT / '_base_' / sub for sub in ('datasets/imagenet_bs256_dynamixer_224.py',
                                                     'schedules/imagenet_adamw_dynamixer_310e.py',
                                                     'dynamixer_runtime.py')} <= inherited
    assert not [p for p in inherited if isinstance(p, Path) and p.parent == CONFIG_ROOT / 'dynamixer']


@pytest.mark.parametrize('arch', ['m', 'l'])
def test_recipes_differ_from_s_only_in_the_specs_per_arch_rows(arch):
    """Built from the bases rather than from the S file, M and L must still be S's recipe except for what the
    spec's table changes per arch: arch (and so the head's input), drop path, batch, the test resize."""
    ours, s = flatten(load(RECIPES[arch]).to_dict()), flatten(load(RECIPES['s']).to_dict())
    differing = {key for key in ours.keys() | s.keys() if ours.get(key, 'missing') != s.get(key, 'missing')}
    test_resize = {'test_pipeline.1.scale', 'val_dataloader.dataset.pipeline.1.scale',
                   'test_dataloader.dataset.pipeline.1.scale'}
    assert differing <= test_resize | {
        'model.backbone.arch', 'model.backbone.drop_path_rate', 'model.head.in_channels',
        'auto_scale_lr.base_batch_size', 'train_dataloader.batch_size', 'val_dataloader.batch_size',
        'test_dataloader.batch_size'}
    assert ours['model.backbone.arch'] == arch
    assert ours['model.backbone.drop_path_rate'] == SPEC[arch]['drop_path']
    assert ours['model.head.in_channels'] == SPEC[arch]['head_in']


@pytest.mark.parametrize('arch', RECIPES)
def test_test_pipeline_equals_timms_eval_transform(arch, tmp_path):
    """The release evaluates with timm's transform at the spec's crop_pct (shorter side floor(224 / crop_pct),
    bicubic, centre crop 224): the recipe's val pipeline, checked loading included, gives the same pixels."""
    from PIL import Image
    from timm.data import create_transform
    # 3:2, so that both resizes give whole long sides (248 x 372, 256 x 384) whichever way each rounds.
    pixels = np.random.default_rng(0).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'image.png')
    ours = run_pipeline(load(RECIPES[arch]).val_dataloader.dataset.pipeline, tmp_path / 'image.png')['inputs']
    timm_eval = create_transform(224, is_training=False, crop_pct=SPEC[arch]['crop_pct'], interpolation='bicubic')
    resize_and_crop = timm_eval.transforms[:2]  # then to-tensor and normalisation (the data preprocessor's job here)
    image = Image.open(tmp_path / 'image.png')
    for transform in resize_and_crop:
        image = transform(image)
    expected = torch.from_numpy(np.asarray(image)[..., ::-1].copy()).permute(2, 0, 1)  # BGR, as mmcv loads
    assert ours.shape == expected.shape == (3, 224, 224)
    assert torch.equal(ours, expected)


def test_no_weight_decay_on_norms_and_biases():
    """The spec's optimiser: AdamW lr 2e-3, weight decay 0.05 except on biases and norms."""
    from mmengine.optim import build_optim_wrapper
    cfg = load(RECIPES['s'])
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.in_channels = 32
    model = build_mmpretrain_model(cfg.model)
    # DynaMixerRunner's float32 replacement of the AMP wrapper without CUDA.
    optim_wrapper = dict(cfg.optim_wrapper, type='OptimWrapper')
    del optim_wrapper['loss_scale']
    wrapper = build_optim_wrapper(model, optim_wrapper)
    assert type(wrapper.optimizer) is torch.optim.AdamW and wrapper.optimizer.defaults['lr'] == 2e-3
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    for name, p in model.named_parameters():
        assert decay[id(p)] == (0.0 if p.ndim == 1 else 0.05), name


def test_lr_schedule_equals_timm_cosine():
    """The release steps timm's CosineLRScheduler per epoch; our mmengine scheduler must give the same LRs."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    from timm.scheduler import CosineLRScheduler

    cfg = load(RECIPES['s'])
    ours_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    timm_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0], optimizer=OptimWrapper(ours_opt)))
    timm_scheduler = CosineLRScheduler(timm_opt, t_initial=300, lr_min=1e-5, warmup_t=20, warmup_lr_init=1e-6)
    for epoch in range(cfg.train_cfg.max_epochs):
        timm_scheduler.step(epoch)
        assert ours_opt.param_groups[0]['lr'] == pytest.approx(timm_opt.param_groups[0]['lr'], rel=1e-9), epoch
        scheduler.step()
    assert ours_opt.param_groups[0]['lr'] == pytest.approx(1e-5)


@pytest.mark.parametrize('arch', RECIPES)
def test_params_flops_and_drop_path_match_the_spec(arch):
    """The recipe's model has the release's parameter and FLOP counts, and drop path growing linearly over all
    layers to the spec's rate."""
    from mmengine.analysis import FlopAnalyzer
    from mmdynamixer.models.block import DropPath
    model = build_mmpretrain_model(load(RECIPES[arch]).model).eval()
    spec = SPEC[arch]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == spec['params_m']
    analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 224, 224),))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analyzer.total() / 1e9 == pytest.approx(spec['flops_g'], abs=0.01)
    rates = [m.drop_prob for m in model.backbone.modules() if isinstance(m, DropPath)]
    depth = sum(spec['layers'])
    assert rates == pytest.approx([spec['drop_path'] * k / (depth - 1) for k in range(depth)])


def test_digits_config_trains_on_the_demos_data(digits, monkeypatch):
    """The demo config with the folder the demo's tool writes: the checked dataset finds its classes, the
    pipeline gives the model's input size, and the model's loss on a batch is finite."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    cfg = load('dynamixer-tiny_2xb64_digits.py')
    monkeypatch.chdir(digits.parents[1])  # data_root is data/digits, relative to the working directory
    # The Runner gives the model the config's top-level data_preprocessor.
    model = build_mmpretrain_model(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset.metainfo['classes']) == cfg.model.head.num_classes
    batch = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), training=True)
    assert tuple(batch['inputs'].shape) == (2, 3, 56, 56)
    loss = model(**batch, mode='loss')['loss']
    assert torch.isfinite(loss) and loss > 0


@pytest.fixture(scope='module')
def imagenet_1k_classes(tmp_path_factory):
    """data/imagenet in the folder layout: 1000 wnid folders with one small image each, per split."""
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
def test_recipe_pipelines_run_on_imagenet_layouts(imagenet_1k_classes, layout):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    from mmdynamixer.datasets import CheckedImageNet
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
    cfg = load(RECIPES['s'])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            dataset = DATASETS.build(dict(loader.dataset, data_root=str(root)))
            assert isinstance(dataset, CheckedImageNet)
            assert len(dataset) == (1000 if layout == 'folders' else 143)
            sample = dataset[5]
            assert tuple(sample['inputs'].shape) == (3, 224, 224)
            assert sample['data_samples'].gt_label.item() == (5 if layout == 'folders' else 35)


@pytest.mark.stack
@pytest.mark.parametrize('scope,backbone_type', [('mmpretrain', 'DynaMixer'), ('mmdet', 'mmpretrain.DynaMixer'),
                                                 ('mmseg', 'mmpretrain.DynaMixer')])
def test_registered_for_every_toolbox(scope, backbone_type):
    """Each toolbox's registry builds it in its own scope; mmdet and mmseg configs name it ``mmpretrain.DynaMixer``."""
    from mmengine.registry import DefaultScope
    models = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        backbone = models.build(dict(type=backbone_type, arch=TINY_ARCH, out_indices=(0, 1, 2, 3), final_norm=False))
    outs = backbone(torch.randn(1, 3, 64, 80))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 10, 12), (1, 32, 5, 6), (1, 32, 5, 6), (1, 32, 5, 6)]


def test_frozen_stages():
    backbone = build_mmpretrain_model(dict(type='DynaMixer', arch=TINY_ARCH, out_indices=(0, 1, 2, 3),
                                           final_norm=False, frozen_stages=2)).train()
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in backbone.named_parameters()
                      if n.split('.')[0] in ('patch_embed', 'norm0', 'norm1') or n.split('.')[:2] in (
                          ['network', '0'], ['network', '1'], ['network', '2'])}
    assert not backbone.network[2].training and backbone.network[3].training
    with pytest.raises(ValueError, match=r'frozen_stages=5 is out of range: allowed -1 .* to 4'):
        build_mmpretrain_model(dict(type='DynaMixer', arch=TINY_ARCH, frozen_stages=5))


# What several configs share is spelled once under configs/_base_/, each literal below in that file only.
SPELLED_ONCE = {
    'embed_dims=[32, 64, 64, 64]': '_base_/models/dynamixer-tiny.py',  # the tiny arch of the demos
    "'annotations/instances_train.json'": '_base_/datasets/digit_scenes_detection.py',
    "seg_map_path='masks/train'": '_base_/datasets/digit_scenes_segmentation.py',
    "'checkpoints/dynamixer-m_in1k.pth'": '_base_/models/dynamixer-m_dense.py',
    "'checkpoints/dynamixer-l_in1k.pth'": '_base_/models/dynamixer-l_dense.py',
}


@pytest.mark.parametrize('literal', SPELLED_ONCE)
def test_shared_blocks_are_spelled_once(literal):
    """The digits classifier and the digit-scenes configs take the tiny arch from its base, the digit-scenes configs
    their data, the M and L dense configs their backbone."""
    spelled = {str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.rglob('*.py') if literal in p.read_text()}
    assert spelled == {SPELLED_ONCE[literal]}


@pytest.mark.parametrize('name', [n for n in CONFIGS if 'digit-scenes' in n])
def test_digit_scenes_configs_take_the_tiny_arch_and_data_from_the_bases(name):
    """The backbone is the digits classifier's tiny arch (so that its weights load) and the loaders read the
    digit scenes, whatever the S config they inherit trains on."""
    cfg, tiny = load(name), Config.fromfile(CONFIG_ROOT / '_base_' / 'models' / 'dynamixer-tiny.py')
    assert cfg.model.backbone.arch == tiny.dynamixer_tiny_arch
    assert cfg.model.backbone.arch == load('dynamixer-tiny_2xb64_digits.py').model.backbone.arch
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == cfg.data_root == 'data/digit_scenes/'
        pipeline = cfg.train_pipeline if loader == 'train_dataloader' else cfg.test_pipeline
        assert cfg[loader].dataset.pipeline == pipeline, loader
