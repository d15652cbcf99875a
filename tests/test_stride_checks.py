"""The strides check (mmdynamixer/engine/checks.py, tools/analysis/check_strides.py): a DynaMixer backbone's strides
against the FPN reading it, the anchors, the RoI extractors and the segmentation heads, refused with the values
and what to set; every shipped dense config passes."""
import copy
import re
import runpy
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from mmdynamixer.engine.checks import check_config, check_feature_strides, stride_report

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'analysis' / 'check_strides.py'
DENSE = sorted(str(p.relative_to(REPO)) for folder in ('dynamixer', 'resnet')
               for p in (REPO / 'configs' / folder).glob('*.py')
               if p.name.startswith(('retinanet_', 'mask-rcnn_', 'fpn_', 'upernet_')))


@pytest.fixture(scope='module')
def configs():
    """The merged configs, read once (their toolbox bases take a while); each test copies what it changes."""
    cache = {}

    def load(path: str) -> Config:
        if path not in cache:
            cache[path] = Config.fromfile(str(REPO / path) if not path.startswith('/') else path)
        return copy.deepcopy(cache[path])
    return load


@pytest.fixture(scope='module')
def foreign_retinanet(tmp_path_factory) -> Path:
    """The issue's case: the README's 'any OpenMMLab 2.x config' backbone (all four stages) dropped into mmdet's
    own RetinaNet config with the neck's in_channels set, as a new user would. It builds and trains; its FPN
    returns maps at strides 14, 14, 14, 28 and 56 under anchors for 8 to 128."""
    path = tmp_path_factory.mktemp('user') / 'retinanet_dynamixer_in_mmdet.py'
    path.write_text(
        "_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']\n"
        "custom_imports = dict(imports=['mmdynamixer'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='mmpretrain.DynaMixer', arch='s', out_indices=(0, 1, 2, 3),\n"
        "                           final_norm=False),\n"
        "             neck=dict(in_channels=[192, 384, 384, 384]))\n")
    return path


def test_foreign_config_with_every_stage_is_refused_with_what_to_set(configs, foreign_retinanet):
    cfg = configs(str(foreign_retinanet))
    rows, problems = stride_report(cfg)
    assert dict(rows)['model.neck (FPN, start_level=1) outputs'] == [14, 14, 14, 28, 56]
    assert dict(rows)['model.bbox_head.anchor_generator.strides'] == [8, 16, 32, 64, 128]
    with pytest.raises(ValueError) as error:
        check_config(cfg)  # what DynaMixerRunner runs before building anything
    message = str(error.value)
    # The FPN reads three maps at stride 14; one map per stride is out_indices (0, 3).
    assert 'strides [14, 14, 14]' in message
    assert ('set model.backbone.out_indices=(0, 3) (the last stage at each stride), model.neck.in_channels=[192, '
            '384] and model.neck.start_level=0: its outputs are then at strides [7, 14, 28, 56, 112]') in message
    # The anchors: ResNet's strides, to be the pyramid's, with their sizes kept (4 x 8/7 = 32/7).
    assert ('model.bbox_head.anchor_generator.strides=[8, 16, 32, 64, 128], but the maps it runs on are at strides '
            '[14, 14, 14, 28, 56] ([7, 14, 28, 56, 112] once the neck is fixed): set strides=[7, 14, 28, 56, 112]. '
            'To keep the anchors\' sizes in pixels, multiply octave_base_scale by 8/7: octave_base_scale=4 * 8/7 = '
            '4.57143.') in message
    assert "inherit one, e.g. _base_ = [__import__('mmdynamixer').config_file(" in message


def test_foreign_config_fixed_as_the_message_says_passes(configs, foreign_retinanet):
    cfg = configs(str(foreign_retinanet))
    cfg.merge_from_dict({'model.backbone.out_indices': (0, 3), 'model.neck.in_channels': [192, 384],
                         'model.neck.start_level': 0,
                         'model.bbox_head.anchor_generator.strides': [7, 14, 28, 56, 112],
                         'model.bbox_head.anchor_generator.octave_base_scale': 32 / 7})
    check_config(cfg)
    assert stride_report(cfg)[1] == []


def test_the_runner_refuses_it_before_building_anything(configs, foreign_retinanet, tmp_path):
    from mmdynamixer.engine import DynaMixerRunner
    cfg = configs(str(foreign_retinanet))
    cfg.work_dir = str(tmp_path / 'work_dir')
    with pytest.raises(ValueError, match=re.escape('set strides=[7, 14, 28, 56, 112]')):
        DynaMixerRunner.from_cfg(cfg)
    assert not (tmp_path / 'work_dir').exists()


def test_the_tool_prints_the_strides_and_fails_on_the_foreign_config(foreign_retinanet, monkeypatch, capsys):
    def run(*argv):
        monkeypatch.setattr(sys, 'argv', [TOOL.name, *map(str, argv)])
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(TOOL), run_name='__main__')
        return done.value.code, capsys.readouterr()

    code, printed = run(foreign_retinanet)
    assert code == 1
    assert re.search(r'model\.neck \(FPN, start_level=1\) outputs +\[14, 14, 14, 28, 56\]', printed.out)
    assert 'set model.backbone.out_indices=(0, 3)' in printed.err and 'set strides=[7, 14, 28, 56, 112]' in printed.err

    code, printed = run(foreign_retinanet, '--cfg-options', 'model.backbone.out_indices=(0,3)',
                        'model.neck.in_channels=[192,384]', 'model.neck.start_level=0',
                        'model.bbox_head.anchor_generator.strides=[7,14,28,56,112]')
    assert code == 0 and printed.out.rstrip().endswith('the strides of the maps it runs on')
    assert re.search(r'anchor_generator\.strides +\[7, 14, 28, 56, 112\]', printed.out)


@pytest.mark.parametrize('path', DENSE)
def test_every_shipped_dense_config_passes(configs, path):
    cfg = configs(path)
    check_config(dict(cfg, load_from=None))
    rows, problems = stride_report(cfg)
    assert problems == []
    if cfg.model.backbone.type.endswith('DynaMixer'):
        strides = dict(rows)
        assert strides[next(k for k in strides if k.startswith('model.backbone'))] == [7, 14]
        told = [v for k, v in strides.items() if not k.startswith(('model.backbone', 'model.neck'))]
        assert all(v == [7, 14, 28, 56, 112][:len(v)] for v in told), strides
    else:
        assert rows == []  # ResNet's strides are not ours to check


def test_roi_extractors_with_resnets_strides_are_refused(configs):
    cfg = configs('configs/dynamixer/mask-rcnn_dynamixer-s_fpn_1x_coco.py')
    cfg.model.roi_head.mask_roi_extractor.featmap_strides = [4, 8, 16, 32]
    with pytest.raises(ValueError) as error:
        check_feature_strides(cfg)
    assert str(error.value).endswith(
        '- model.roi_head.mask_roi_extractor.featmap_strides=[4, 8, 16, 32], but the first 4 of the maps it pools '
        'from are at strides [7, 14, 28, 56]: set featmap_strides=[7, 14, 28, 56].')
    assert 'bbox_roi_extractor' not in str(error.value)


def test_rpn_anchors_off_by_a_level_are_refused(configs):
    cfg = configs('configs/dynamixer/mask-rcnn_dynamixer-s_fpn_1x_coco.py')
    cfg.model.rpn_head.anchor_generator.strides = [14, 28, 56, 112, 224]
    with pytest.raises(ValueError, match=re.escape(
            'model.rpn_head.anchor_generator.strides=[14, 28, 56, 112, 224], but the maps it runs on are at strides '
            '[7, 14, 28, 56, 112]: set strides=[7, 14, 28, 56, 112]. To keep the anchors\' sizes in pixels, multiply '
            'scales by 2: scales=[9.14286].')):
        check_feature_strides(cfg)


def test_segmentation_heads_are_checked_against_the_maps_they_select(configs):
    cfg = configs('configs/dynamixer/fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py')
    cfg.model.decode_head.feature_strides = [4, 8, 16, 32]
    with pytest.raises(ValueError, match=re.escape(
            'model.decode_head.feature_strides=[4, 8, 16, 32], but the maps its in_index=[0, 1, 2, 3] selects are at '
            'strides [7, 14, 28, 56]: set feature_strides=[7, 14, 28, 56].')):
        check_feature_strides(cfg)
    # The right strides under mmseg's own FPNHead, which miscounts the steps of 7-56 (1, 1, 1, 2 stages).
    cfg.model.decode_head.update(type='FPNHead', feature_strides=[7, 14, 28, 56])
    with pytest.raises(ValueError, match=re.escape(
            "as [0, 1, 1, 2] (int(log2(stride) - log2(first)), float rounding), not as the strides' ratios: use "
            "type='StrideFPNHead'")):
        check_feature_strides(cfg)

    cfg = configs('configs/dynamixer/upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py')
    cfg.model.auxiliary_head.in_index = 4
    with pytest.raises(ValueError, match=re.escape(
            'model.auxiliary_head.in_index=4 selects maps that do not exist: the head reads 4 maps, at strides '
            '[7, 14, 28, 56].')):
        check_feature_strides(cfg)


def test_backbone_strides_follow_its_out_indices_and_arch(configs):
    """M's stages are at 7, 7, 14, 14: the FPN over all four reads two maps per stride."""
    cfg = configs('configs/dynamixer/retinanet_dynamixer-m_fpn_1x_coco.py')
    cfg.merge_from_dict({'model.backbone.out_indices': (0, 1, 2, 3), 'model.neck.in_channels': [256, 256, 512, 512]})
    with pytest.raises(ValueError, match=re.escape(
            "reads the backbone's maps at strides [7, 7, 14, 14] (from start_level=0 of the backbone's [7, 7, 14, "
            "14]), but an FPN needs each input at a larger stride than the one before, or its levels repeat a "
            "stride: set model.backbone.out_indices=(1, 3)")):
        check_feature_strides(cfg)
