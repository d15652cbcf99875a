"""load_from, the toolboxes' way to fine-tune a trained model on a new dataset (issue 30, defect 3): through mmdet's
own tools/train.py, a 10-class digit-scenes RetinaNet checkpoint loads into a 5-class RetinaNet, the class layers of
another shape skipped and named with both shapes at WARNING, everything else loaded; strict_load_from=True stops
instead; a backbone of another shape is refused (--resume and evaluation stay strict: tests/test_reliability.py)."""
import copy
import re
import subprocess
import sys
import textwrap
import uuid

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from mmdynamixer.engine import DynaMixerRunner, mmengine_checkpoint_loading
from mmdynamixer.testing import build_mmpretrain_model, tool_env, upstream_tool, write_image_folder

RETINANET = REPO / 'configs/dynamixer/retinanet_dynamixer-tiny_fpn_digit-scenes.py'
# RetinaNet's class layer: 9 anchors a position (3 scales x 3 ratios) x classes outputs, over the 64-channel head.
SKIPPED = {'bbox_head.retina_cls.weight': ((90, 64, 3, 3), (45, 64, 3, 3)), 'bbox_head.retina_cls.bias': ((90,), (45,))}


@pytest.fixture(scope='module')
def ten_class_retinanet(tmp_path_factory):
    """The digit-scenes RetinaNet (10 classes) as built, saved in mmengine's checkpoint format, and 8 scenes."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    import mmdynamixer.integrations.mmpretrain  # noqa: F401  (the config's custom_imports, in this process)
    root = tmp_path_factory.mktemp('load_from')
    subprocess.run([sys.executable, str(REPO / 'tools/demo/prepare_digit_scenes.py'), str(root / 'scenes'), '--train',
                    '8', '--val', '2', '--seed', '1'], check=True, capture_output=True, timeout=120)
    cfg = Config.fromfile(str(RETINANET))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    state_dict = {key: value + 0.5 for key, value in model.state_dict().items()}  # not what a new model starts at
    torch.save({'meta': {'epoch': 12, 'iter': 600}, 'state_dict': state_dict}, root / 'retinanet_10.pth')
    return root / 'retinanet_10.pth', root / 'scenes', state_dict


def five_class_config(folder, checkpoint, scenes, strict: bool):
    """The digit-scenes RetinaNet with 5 classes (digits 0-4) fine-tuned from ``checkpoint`` for one iteration at
    lr 0 (the loaded weights are then what the checkpoint after it holds), without validation."""
    path = folder / f'retinanet_5{"_strict" if strict else ""}.py'
    path.write_text(textwrap.dedent(f'''
        _base_ = ['{RETINANET}']
        load_from = '{checkpoint}'
        model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=5))
        train_dataloader = dict(batch_size=2, num_workers=0, dataset=dict(
            data_root='{scenes}/', metainfo=dict(classes=('0', '1', '2', '3', '4')), indices=2))
        optim_wrapper = dict(optimizer=dict(lr=0.0))
        train_cfg = dict(max_epochs=1)
        val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
        default_hooks = dict(checkpoint=dict(interval=1, save_best=None), logger=dict(interval=1))
    ''') + ("custom_hooks = [dict(type='CheckpointShapeCheckHook', strict_load_from=True)]\n" if strict else ''))
    return path


def mmdet_train(config, work):
    run = subprocess.run([sys.executable, str(upstream_tool('mmdet', 'train.py')), str(config), '--work-dir',
                          str(work)], cwd=REPO, env=tool_env(), capture_output=True, text=True, timeout=600)
    return run.returncode, run.stdout + run.stderr


def test_mmdet_fine_tunes_a_detector_with_another_num_classes(ten_class_retinanet, tmp_path):
    checkpoint, scenes, saved = ten_class_retinanet
    code, log = mmdet_train(five_class_config(tmp_path, checkpoint, scenes, strict=False), tmp_path / 'work')
    assert code == 0, log[-5000:]
    warning = re.search(r'WARNING - load_from=\S+: (\d+) tensor\(s\) of another shape than the model\'s are not '
                        r'loaded.*?\n((?:  .*\n)+)', log)
    assert warning, log[-5000:]
    listed = dict(re.findall(r'  (\S+): (.*)', warning[2]))
    assert listed == {key: f'{old} in the checkpoint, {new} in the model' for key, (old, new) in SKIPPED.items()}
    with mmengine_checkpoint_loading():
        tuned = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu')['state_dict']
    assert tuned.keys() == saved.keys()
    assert all(tuple(tuned[key].shape) == new for key, (_, new) in SKIPPED.items())  # kept their initialisation
    assert all(torch.equal(tuned[key], saved[key]) for key in saved if key not in SKIPPED)

    code, log = mmdet_train(five_class_config(tmp_path, checkpoint, scenes, strict=True), tmp_path / 'strict')
    assert code != 0
    assert re.search(r'Checkpoint \S+retinanet_10.pth does not fit the model \(strict_load_from=True\): 2 tensor\(s\) '
                     r'differ in shape\n  bbox_head.retina_cls.weight: \(90, 64, 3, 3\) in the checkpoint, '
                     r'\(45, 64, 3, 3\) in the model', log), log[-5000:]
    assert not (tmp_path / 'strict' / 'epoch_1.pth').exists()


def test_load_from_refuses_a_backbone_of_another_shape(tmp_path):
    """A classifier whose generate layers differ in shape (another input size's, say): refused naming each
    backbone tensor, not trained from a partly random backbone."""
    data = write_image_folder(tmp_path / 'data', num_classes=4, per_class=2)
    cfg = Config.fromfile(str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'))
    other = copy.deepcopy(cfg.model)
    other.backbone.arch.reduced_dims = [1, 1, 1, 1]
    path = tmp_path / 'other.pth'
    torch.save({'meta': {}, 'state_dict': build_mmpretrain_model(other).state_dict()}, path)
    options = {'work_dir': str(tmp_path / 'work'), 'experiment_name': f'load_from_{uuid.uuid4().hex}',
               'load_from': str(path), 'model.head.num_classes': 4, 'data_preprocessor.num_classes': 4}
    for split in ('train', 'val', 'test'):
        options.update({f'{split}_dataloader.dataset.data_root': str(data), f'{split}_dataloader.num_workers': 0,
                        f'{split}_dataloader.persistent_workers': False})
    cfg.merge_from_dict(options)
    with pytest.raises(ValueError, match=r'load_from=\S+other.pth: 30 backbone tensor\(s\) differ in shape from the '
                                         r'model\'s') as error:
        DynaMixerRunner.from_cfg(cfg).train()
    # The first stage: 4 segments x 1 or 2 reduced dims from its 32 channels.
    assert '  backbone.network.0.0.attn.mix_h.compress.weight: (4, 32) in the checkpoint, (8, 32) in the model\n' \
        in str(error.value)
    assert 'head.fc' not in str(error.value)  # the head's 10 -> 4 classes alone would have been skipped
    assert not list((tmp_path / 'work').glob('*.pth'))
