"""Fine-tuning: the release's CIFAR transfer recipe as configs (parameter groups, schedule, a few iterations on
generated CIFAR pickles), the image-folder config, layer-wise lr decay, and resampling ``generate`` to another
input size."""
import copy
import math
import pickle
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdynamixer.checkpoints import generate_token_counts, resample_generate
from mmdynamixer.engine import mmengine_checkpoint_loading
from mmdynamixer.models.mixing import DynaMixerOp
from mmdynamixer.testing import TINY_ARCH, build_mmpretrain_model, tool_env, write_image_folder

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs' / 'dynamixer'
CIFAR = {f'dynamixer-{arch}_1xb128_cifar{n}.py': (arch, n) for arch in 'sml' for n in (10, 100)}
# TINY_ARCH with generate layers for 224-px inputs (32 tokens, then 16): the recipe's input size, milliseconds.
TINY_224 = dict(TINY_ARCH, resolutions=[32, 16, 16, 16])


def _built_in_scope(registry_name: str, cfg: dict):
    import mmpretrain.registry as registries
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return getattr(registries, registry_name).build(cfg)


def _tiny_classifier_checkpoint(path: Path, arch: dict, num_classes: int = 1000) -> dict:
    """An mmpretrain classifier checkpoint (backbone.*, head.fc.*) with values off their initialisation."""
    model = build_mmpretrain_model(dict(type='ImageClassifier', backbone=dict(type='DynaMixer', arch=arch),
                                        neck=dict(type='GlobalAveragePooling'),
                                        head=dict(type='LinearClsHead', num_classes=num_classes,
                                                  in_channels=arch['embed_dims'][-1])))
    generator = torch.Generator().manual_seed(1)
    state_dict = {k: v + torch.randn(v.shape, generator=generator) * 0.1 for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state_dict), path)
    return state_dict


# --- the CIFAR recipe -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(CIFAR))
def test_cifar_configs_are_the_release_recipe(name):
    """Each item of the release's transfer_learning.py that lives in the config, for S, M and L."""
    arch, classes = CIFAR[name]
    cfg = Config.fromfile(CONFIGS / name)
    backbone, head = cfg.model.backbone, cfg.model.head
    assert backbone.arch == arch and backbone.drop_path_rate == 0.1
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=f'checkpoints/dynamixer-{arch}_in1k-ema.pth',
                                     prefix='backbone.')
    assert head.num_classes == cfg.data_preprocessor.num_classes == classes
    assert head.in_channels == {'s': 384, 'm': 512, 'l': 512}[arch]
    assert head.loss == dict(type='CrossEntropyLoss', loss_weight=1.0) and cfg.model.train_cfg is None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert (dataset.type, dataset.data_root) == (f'CIFAR{classes}', f'data/cifar{classes}')
    assert cfg.train_dataloader.dataset.split == 'train' and cfg.val_dataloader.dataset.split == 'test'
    assert cfg.train_dataloader.batch_size == 128 and cfg.val_dataloader.batch_size == 100
    # transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) on [0, 1] images
    assert np.allclose(cfg.data_preprocessor.mean, [0.4914 * 255, 0.4822 * 255, 0.4465 * 255])
    assert np.allclose(cfg.data_preprocessor.std, [0.2023 * 255, 0.1994 * 255, 0.2010 * 255])
    assert not cfg.data_preprocessor.to_rgb
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # float32, no AMP
    assert cfg.train_cfg.max_epochs == 60 and not cfg.get('custom_hooks')  # no EMA
    model = build_mmpretrain_model(cfg.model)  # builds (weights are loaded by init_weights, not called here)
    assert model.head.fc.out_features == classes


def test_cifar_pipelines_match_torchvision_on_a_cifar_image():
    """mmpretrain's transforms in the config give torchvision's pixels: Resize(224) and the test
    Resize([224, 224]) exactly (the same PIL call); RandomCrop(224, padding=28) is a 224 window of the image
    padded by 28 zeros."""
    from mmcv.transforms import Compose
    from PIL import Image
    from torchvision import transforms as T
    cfg = Config.fromfile(CONFIGS / 'dynamixer-s_1xb128_cifar10.py')
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        test = Compose(cfg.test_pipeline[:-1])(dict(img=image.copy()))['img']
        resize, crop = Compose(cfg.train_pipeline[:1]), Compose(cfg.train_pipeline[1:2])
        resized = resize(dict(img=image.copy()))['img']
        cropped = crop(dict(img=resized.copy()))['img']
    expected = np.asarray(T.Resize([224, 224])(Image.fromarray(image)))
    assert np.array_equal(test, expected)
    assert np.array_equal(resized, np.asarray(T.Resize(224)(Image.fromarray(image))))
    padded = np.pad(resized, ((28, 28), (28, 28), (0, 0)))
    windows = [padded[y:y + 224, x:x + 224] for y in range(57) for x in range(57)]
    assert cropped.shape == (224, 224, 3) and any(np.array_equal(cropped, w) for w in windows)


def _closed_form_cosine(base_lr: float, epoch: int, eta_min: float = 2e-4, t_max: int = 60) -> float:
    """torch's CosineAnnealingLR as the release steps it once per epoch."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


@pytest.mark.parametrize('name', ['dynamixer-s_1xb128_cifar10.py', 'dynamixer-s_1xb128_cifar100.py'])
def test_cifar_parameter_groups_have_the_releases_lrs_at_the_first_and_last_epoch(name):
    """patch_embed and the stages at 1e-4 rising to ~2e-4 (eta_min is above their lr), the head at 1e-2 falling to
    ~2e-4, weight decay 5e-4 and momentum 0.9 everywhere, the final norm in no group and without gradient."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(CONFIGS / name)
    model = build_mmpretrain_model(cfg.model)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in cfg.param_scheduler]
    names = {id(p): n for n, p in model.named_parameters()}
    groups = wrapper.optimizer.param_groups
    grouped = [names[id(p)] for g in groups for p in g['params']]
    assert sorted(grouped) == sorted(n for n in names.values() if not n.startswith('backbone.norm.'))
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ['backbone.norm.weight',
                                                                               'backbone.norm.bias']
    assert {(g['weight_decay'], g['momentum']) for g in groups} == {(5e-4, 0.9)}
    assert type(wrapper.optimizer) is torch.optim.SGD

    def lrs():
        by_part = {}
        for g in groups:
            for p in g['params']:
                part = names[id(p)].split('.')[1] if names[id(p)].startswith('backbone.') else 'head'
                by_part.setdefault(part, set()).add(g['lr'])
        return by_part

    first = lrs()
    assert first == {'patch_embed': {1e-4}, 'network': {1e-4}, 'head': {1e-2}}
    for _ in range(59):  # the epochs 0..58 end
        for scheduler in schedulers:
            scheduler.step()
    last = lrs()
    for part, base in (('patch_embed', 1e-4), ('network', 1e-4), ('head', 1e-2)):
        (lr,) = last[part]
        assert lr == pytest.approx(_closed_form_cosine(base, 59), rel=1e-9)
    (network_lr,) = last['network']
    assert network_lr == pytest.approx(2e-4 - 1e-4 * math.sin(math.pi / 120) ** 2, rel=1e-9)  # risen to ~2e-4


def _write_cifar(root: Path, classes: int, per_file: int = 4) -> None:
    """mmpretrain's python-pickle layout: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} with
    'data' (N, 3072) uint8 rows (R, G, B planes) and 'labels'; cifar-100-python/{train,test,meta} with
    'fine_labels' and 'coarse_labels'."""
    rng = np.random.default_rng(0)

    def batch(n):
        labels = [int(x) for x in rng.integers(0, classes, n)]
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        if classes == 10:
            return {'batch_label': 'generated', 'labels': labels, 'data': data, 'filenames': [''] * n}
        return {'fine_labels': labels, 'coarse_labels': [x // 5 for x in labels], 'data': data,
                'filenames': [''] * n}

    folder = root / ('cifar-10-batches-py' if classes == 10 else 'cifar-100-python')
    folder.mkdir(parents=True)
    if classes == 10:
        files = {f'data_batch_{i}': batch(per_file) for i in range(1, 6)}
        files.update(test_batch=batch(per_file), **{'batches.meta': {'label_names': [str(i) for i in range(10)]}})
    else:
        files = dict(train=batch(5 * per_file), test=batch(per_file),
                     meta={'fine_label_names': [str(i) for i in range(100)],
                           'coarse_label_names': [str(i) for i in range(20)]})
    for filename, content in files.items():
        (folder / filename).write_bytes(pickle.dumps(content, protocol=2))


@pytest.mark.parametrize('classes', [10, 100])
def test_cifar_recipe_trains_on_generated_pickles(classes, tmp_path, monkeypatch):
    """Two iterations of the recipe (its data pipeline, optimizer and schedule; a tiny backbone) from an ImageNet
    checkpoint: the backbone starts from it, the head is new, the final norm ends exactly as loaded."""
    import mmpretrain.datasets.cifar
    from mmdynamixer.engine import DynaMixerRunner
    # Generated files cannot have the release's md5 sums, which mmpretrain checks before reading.
    monkeypatch.setattr(mmpretrain.datasets.cifar, 'check_md5', lambda path, md5: True)
    _write_cifar(tmp_path / 'data', classes)
    loaded = _tiny_classifier_checkpoint(tmp_path / 'in1k.pth', TINY_224)
    cfg = Config.fromfile(CONFIGS / f'dynamixer-s_1xb128_cifar{classes}.py')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.backbone.arch = TINY_224
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'in1k.pth')
    cfg.model.head.in_channels = TINY_224['embed_dims'][-1]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(batch_size=10, num_workers=0, persistent_workers=False, pin_memory=False)
        cfg[loader].dataset.update(data_root=str(tmp_path / 'data'), download=False)
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler[0].update(end=1)
    cfg.default_hooks.logger.interval = 1
    runner = DynaMixerRunner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2  # 20 training images, 10 per batch
    state = runner.model.state_dict()
    for key in ('backbone.norm.weight', 'backbone.norm.bias'):
        assert torch.equal(state[key], loaded[key])
    for key in ('backbone.patch_embed.proj.weight', 'backbone.network.0.0.attn.mix_h.generate.weight'):
        assert not torch.equal(state[key], loaded[key])
        assert torch.allclose(state[key], loaded[key], atol=1e-3)  # moved by SGD at lr 1e-4 from the checkpoint
    assert state['head.fc.weight'].shape == (classes, TINY_224['embed_dims'][-1])
    assert state['head.fc.weight'].std() < 0.03  # the new head's init (std 0.02), not the checkpoint's values


def test_frozen_params_constructor_names_a_prefix_that_matches_nothing():
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    cfg = dict(optimizer=dict(type='SGD', lr=0.1), constructor='FrozenParamsOptimWrapperConstructor',
               paramwise_cfg=dict(frozen=['backbone.norm.']))
    with pytest.raises(ValueError, match=r"no parameter name starts with \['backbone.norm.'\].*'0.weight'"):
        build_optim_wrapper(model, cfg)
    with pytest.raises(ValueError, match="frozen=None"):
        build_optim_wrapper(model, dict(cfg, paramwise_cfg=dict()))


def test_frozen_params_constructor_refuses_parameters_ddp_wrapped_as_trainable():
    """DDP would wait for their gradients (and fail at the second iteration); unless it looks for unused ones."""
    import torch.distributed as dist
    from mmengine.optim import build_optim_wrapper
    from torch.nn.parallel import DistributedDataParallel
    cfg = dict(optimizer=dict(type='SGD', lr=0.1), constructor='FrozenParamsOptimWrapperConstructor',
               paramwise_cfg=dict(frozen=['norm.']))
    dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)
    try:
        def wrapped(**options):
            layers = torch.nn.ModuleDict(dict(norm=torch.nn.LayerNorm(2), fc=torch.nn.Linear(2, 2)))
            return DistributedDataParallel(layers, **options)
        with pytest.raises(ValueError, match=r"\['norm.weight', 'norm.bias'\] were trainable when "
                                             r'DistributedDataParallel wrapped the model'):
            build_optim_wrapper(wrapped(), cfg)
        model = wrapped(find_unused_parameters=True)
        build_optim_wrapper(model, cfg)
        trainable = [name for name, param in model.module.named_parameters() if param.requires_grad]
        assert trainable == ['fc.weight', 'fc.bias']
    finally:
        dist.destroy_process_group()


# --- your own images --------------------------------------------------------------------------------------------

FOLDER_CONFIG = CONFIGS / 'dynamixer-s_1xb64_finetune-folder.py'


def _folder_cfg(root: Path, num_classes: int) -> Config:
    """The folder config with the documented --cfg-options for the data root and the class count."""
    cfg = Config.fromfile(FOLDER_CONFIG)
    cfg.merge_from_dict({'model.head.num_classes': num_classes, 'data_preprocessor.num_classes': num_classes,
                         **{f'{loader}.dataset.data_root': str(root)
                            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}})
    return cfg


def _write_folder(root: Path, classes, per_class: int = 2) -> None:
    from PIL import Image
    for split in ('train', 'val'):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new('RGB', (40, 30), (40 * i, 80, 120)).save(root / split / name / f'{i}.jpg')


def test_folder_config_starts_from_imagenet_with_a_new_head(tmp_path):
    loaded = _tiny_classifier_checkpoint(tmp_path / 'in1k.pth', TINY_ARCH)
    cfg = _folder_cfg(tmp_path / 'data', 3)
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.' and cfg.model.head.num_classes == 3
    cfg.model.backbone.update(arch=TINY_ARCH, init_cfg=dict(cfg.model.backbone.init_cfg,
                                                            checkpoint=str(tmp_path / 'in1k.pth')))
    cfg.model.head.in_channels = TINY_ARCH['embed_dims'][-1]
    model = build_mmpretrain_model(cfg.model)
    model.init_weights()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.items() if k.startswith('backbone.'))
    assert state['head.fc.weight'].shape == (3, TINY_ARCH['embed_dims'][-1])


def test_folder_config_names_bad_data(tmp_path):
    """Fewer class folders than the classes given, and an unreadable image, get the checked dataset's and
    loader's errors through the config's own dataset settings."""
    root = tmp_path / 'data'
    _write_folder(root, ['cat', 'dog'])
    cfg = _folder_cfg(root, 3)
    train = copy.deepcopy(cfg.train_dataloader.dataset)
    with pytest.raises(ValueError, match=r"has 2 class sub-folders \(cat, dog\) but CheckedCustomDataset has 3 "
                                         r"classes"):
        _built_in_scope('DATASETS', dict(train, classes=['cat', 'dog', 'bird']))
    (root / 'val' / 'dog' / 'broken.jpg').write_bytes(b'not a jpeg')
    val = _built_in_scope('DATASETS', copy.deepcopy(cfg.val_dataloader.dataset))
    broken = next(i for i in range(len(val)) if val.get_data_info(i)['img_path'].endswith('broken.jpg'))
    with pytest.raises(OSError, match=r'Unreadable image .*broken\.jpg'):
        val[broken]
    assert val[0]['inputs'].shape == (3, 224, 224)


@pytest.mark.parametrize('config', [FOLDER_CONFIG.name, 'dynamixer-s_1xb128_cifar10.py'])
def test_transfer_configs_freeze_the_final_norm_when_the_model_is_built(config):
    """Before DistributedDataParallel wraps the model, which would otherwise wait for the norm's gradients."""
    cfg = Config.fromfile(CONFIGS / config)
    cfg.model.backbone.update(arch=TINY_ARCH, init_cfg=None)
    cfg.model.head.in_channels = TINY_ARCH['embed_dims'][-1]
    model = build_mmpretrain_model(cfg.model)
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    assert frozen == {'backbone.norm.weight', 'backbone.norm.bias'}


def test_frozen_norm_needs_the_final_norm():
    with pytest.raises(ValueError, match=r'frozen_norm=True freezes the final norm, which final_norm=False and '
                                         r'out_indices=\(0, 3\) do not build'):
        build_mmpretrain_model(dict(type='DynaMixer', arch=TINY_ARCH, final_norm=False, out_indices=(0, 3),
                                    frozen_norm=True))


def test_folder_config_fine_tunes_on_two_processes_as_written(tmp_path, repo):
    """tools/dist_train.sh CONFIG 2 (DDP over gloo on CPU): 3 iterations of the folder config, its frozen final norm
    ends as loaded, the rest of the backbone moves (a tiny backbone at 56 px, 3 generated classes)."""
    loaded = _tiny_classifier_checkpoint(tmp_path / 'in1k.pth', TINY_ARCH)
    data = write_image_folder(tmp_path / 'data', num_classes=3, per_class=8)
    config = tmp_path / 'folder_cfg.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = ['{FOLDER_CONFIG}']
        model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r}),
                                   init_cfg=dict(checkpoint='{tmp_path / "in1k.pth"}')),
                     head=dict(num_classes=3, in_channels={TINY_ARCH["embed_dims"][-1]}))
        data_preprocessor = dict(num_classes=3)
        train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(
            data_root='{data}', pipeline=[dict(type='CheckedLoadImageFromFile'), dict(type='RandomResizedCrop',
                                          scale=56), dict(type='PackInputs')]))
        val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
        train_cfg = dict(max_epochs=1)
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(save_best=None))
    '''))
    run = subprocess.run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(tmp_path / 'work')],
                         cwd=repo, env=tool_env(PORT='29661'), capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert re.search(r'Distributed training: True\s+GPU number: 2', log), log[-3000:]
    assert re.search(r'Epoch\(train\)\s+\[1\]\[3/3\]', log), log[-3000:]  # 24 images, 2 processes x 4
    with mmengine_checkpoint_loading():
        state = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu')['state_dict']
    for key in ('backbone.norm.weight', 'backbone.norm.bias'):
        assert torch.equal(state[key], loaded[key])
    assert not torch.equal(state['backbone.patch_embed.proj.weight'], loaded['backbone.patch_embed.proj.weight'])


# --- layer-wise lr decay ----------------------------------------------------------------------------------------

def test_layer_decay_groups_follow_depth():
    """TINY_ARCH: patch_embed 0; network.0.0 1, the transition network.1.proj with it; network.2.0 2,
    network.3.0 3, network.4.0 4; the final norm and the head 5 (6 depths): lr x rate^(5 - depth)."""
    model = build_mmpretrain_model(dict(type='ImageClassifier', backbone=dict(type='DynaMixer', arch=TINY_ARCH),
                                        neck=dict(type='GlobalAveragePooling'),
                                        head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))
    wrapper = _built_in_scope('OPTIM_WRAPPER_CONSTRUCTORS', dict(
        type='LearningRateDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.5)))(model)
    expected_depth = {'backbone.patch_embed.': 0, 'backbone.network.0.0.': 1, 'backbone.network.1.proj.': 1,
                      'backbone.network.2.0.': 2, 'backbone.network.3.0.': 3, 'backbone.network.4.0.': 4,
                      'backbone.norm.': 5, 'head.': 5}
    groups = wrapper.optimizer.param_groups
    assert len(groups) == sum(1 for _ in model.parameters())
    for group in groups:
        (prefix,) = [p for p in expected_depth if group['param_name'].startswith(p)]
        assert group['layer_id'] == expected_depth[prefix], group['param_name']
        assert group['lr'] == 0.5 ** (5 - expected_depth[prefix]), group['param_name']


# --- other input sizes ------------------------------------------------------------------------------------------

def test_token_counts_come_from_the_checkpoints_strides():
    state = {'backbone.patch_embed.proj.weight': torch.zeros(4, 3, 7, 7),
             'backbone.network.0.0.attn.mix_h.generate.weight': torch.zeros(64, 16),
             'backbone.network.1.proj.weight': torch.zeros(8, 4, 2, 2),
             'backbone.network.2.0.attn.mix_w.generate.weight': torch.zeros(16, 8),
             'backbone.network.3.proj.weight': torch.zeros(8, 8, 1, 1),
             'backbone.network.4.1.attn.mix_w.generate.bias': torch.zeros(16)}
    assert dict(generate_token_counts(state, 84)) == {0: 12, 2: 6, 4: 6}
    assert dict(generate_token_counts(state, 100)) == {0: 15, 2: 8, 4: 8}  # ceil(100 / 7), ceil(100 / 14)
    with pytest.raises(ValueError, match='image_size=0'):
        generate_token_counts(state, 0)
    with pytest.raises(ValueError, match='No DynaMixer generate layers'):
        generate_token_counts({'conv.weight': torch.zeros(1)}, 84)


def _generate_state(weight: torch.Tensor, bias: torch.Tensor) -> dict:
    return {'patch_embed.proj.weight': torch.zeros(4, 3, 7, 7), 'network.0.0.attn.mix_h.generate.weight': weight,
            'network.0.0.attn.mix_h.generate.bias': bias, 'network.0.0.norm1.weight': torch.ones(4)}


def test_resampling_keeps_the_feature_axis_and_the_logit_magnitude():
    """generate's weight is (L_src * L_dst, L_in * d): features stay features; with every input token carrying the
    same code, each logit is a sum over L' tokens and keeps its value (x2 in size: linear interpolation then
    has every old token contribute exactly twice)."""
    length, d = 4, 3
    generator = torch.Generator().manual_seed(0)
    per_feature = torch.tensor([1.0, -2.0, 0.5])
    token_profile = torch.rand(length, generator=generator)  # varies over input tokens only
    weight = (token_profile[:, None] * per_feature).reshape(1, -1).repeat(length * length, 1)  # inputs k-major
    bias = torch.full((length * length,), 0.25)
    state = _generate_state(weight, bias)
    resampled = resample_generate(state, 8 * 7)  # 8 tokens per side
    new_weight = resampled['network.0.0.attn.mix_h.generate.weight']
    new_bias = resampled['network.0.0.attn.mix_h.generate.bias']
    assert new_weight.shape == (64, 24) and new_bias.shape == (64,)
    grid = new_weight.view(8, 8, 8, d)
    assert torch.allclose(grid / grid[..., :1], per_feature / per_feature[0])  # features not mixed
    assert torch.allclose(new_bias, torch.full((64,), 0.25))
    code = torch.tensor([0.3, -1.0, 2.0])
    old_logit = (token_profile.sum() * (per_feature * code).sum()).item()
    new_logits = new_weight @ code.repeat(8)
    assert torch.allclose(new_logits, torch.full((64,), old_logit), rtol=1e-5)
    assert resampled['network.0.0.norm1.weight'] is state['network.0.0.norm1.weight']  # other tensors as they are


def test_resampling_to_the_same_size_changes_nothing_and_runs_in_the_op():
    op = DynaMixerOp(dim=8, seq_len=8, num_segments=2, reduced_dim=2)
    state = {f'network.0.0.attn.mix_h.{k}': v for k, v in op.state_dict().items()}
    state['patch_embed.proj.weight'] = torch.zeros(8, 3, 7, 7)
    same = resample_generate(state, 56)
    assert all(torch.equal(same[k], v) for k, v in state.items())
    bigger = resample_generate(state, 84)
    new_op = DynaMixerOp(dim=8, seq_len=12, num_segments=2, reduced_dim=2)
    new_op.load_state_dict({k.split('mix_h.')[1]: v for k, v in bigger.items() if 'mix_h' in k})
    out = new_op(torch.randn(2, 12, 8))
    assert out.shape == (2, 12, 8) and torch.isfinite(out).all()


def _run_resample_tool(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, 'argv', ['dynamixer_resample.py', *args])
    runpy.run_path(str(REPO / 'tools/model_converters/dynamixer_resample.py'), run_name='__main__')


def test_resample_converter_writes_a_checkpoint_the_new_size_loads(tmp_path, monkeypatch, capsys):
    loaded = _tiny_classifier_checkpoint(tmp_path / 'digits56.pth', TINY_ARCH, num_classes=10)
    _run_resample_tool(monkeypatch, str(tmp_path / 'digits56.pth'), str(tmp_path / 'digits84.pth'),
                       '--resolution', '84')
    assert 'resolutions=[12, 6, 6, 6]' in capsys.readouterr().out
    converted = torch.load(tmp_path / 'digits84.pth', weights_only=True)
    assert converted['meta']['resolutions'] == [12, 6, 6, 6]
    arch = dict(TINY_ARCH, resolutions=[12, 6, 6, 6])
    model = build_mmpretrain_model(dict(type='ImageClassifier', backbone=dict(type='DynaMixer', arch=arch),
                                        neck=dict(type='GlobalAveragePooling'),
                                        head=dict(type='LinearClsHead', num_classes=10, in_channels=32)))
    model.load_state_dict(converted['state_dict'])  # strict: every tensor has the new size's shape
    unchanged = [k for k in loaded if 'generate' not in k]
    assert all(torch.equal(converted['state_dict'][k], loaded[k]) for k in unchanged)
    assert model(torch.randn(1, 3, 84, 84), mode='tensor').shape == (1, 10)

    with pytest.raises(SystemExit) as stopped:
        _run_resample_tool(monkeypatch, str(tmp_path / 'digits56.pth'), str(tmp_path / 'x.pth'), '--resolution', '-3')
    assert stopped.value.code == 2 and 'image_size=-3' in capsys.readouterr().err
