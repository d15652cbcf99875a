"""The detection and segmentation demos (tools/demo/det_demo.py, seg_demo.py) on tiny DynaMixer models built from
the project's dense configs: they print the checkpoint's own prediction under the class names saved in the
checkpoint, write the drawn image at --out-file, and refuse a missing or damaged checkpoint by name.

The tools run in this process (runpy, as tests/test_demo.py runs the classification demo): a subprocess would
spend most of its time importing mmdet or mmseg. The expected predictions come from mmdet's and mmseg's older
single-image APIs (init_detector / init_model and inference_*), which the tools do not use."""
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdynamixer.testing import TINY_ARCH, perturbed

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs' / 'dynamixer'
DET_DEMO = REPO / 'tools' / 'demo' / 'det_demo.py'
SEG_DEMO = REPO / 'tools' / 'demo' / 'seg_demo.py'
# Deliberately not COCO's or ADE20K's first names: the tools must take them from the checkpoint.
DET_CLASSES = ('kite', 'lamp')
SEG_CLASSES = ('meadow', 'pond', 'path', 'hedge')
SEG_PALETTE = [[20, 200, 60], [30, 90, 230], [210, 180, 120], [120, 40, 160]]
# A DynaMixer too small to be slow, under necks and heads of 32 channels.
TINY_BACKBONE = dict(arch=dict(_delete_=True, **TINY_ARCH), init_cfg=None)
TINY_NECK = dict(in_channels=[16, 32], out_channels=32)


@pytest.fixture(autouse=True)
def default_scope_kept():
    """mmdet's and mmseg's inferencers make their scope the process's default registry scope
    (``init_default_scope`` in ``DetInferencer.__init__``, mmdet/apis/det_inferencer.py:98, and
    ``MMSegInferencer.__init__``, mmseg/apis/mmseg_inferencer.py:80), and mmpretrain's inferencer builds its
    pipeline under whatever scope is current (mmpretrain/apis/image_classification.py:119), so a later test's
    classification demo would look for PackInputs in mmseg's registry. Drop the scopes a test created, so the
    one current before it is current again."""
    from mmengine.registry import DefaultScope

    before = set(DefaultScope._instance_dict)  # mmengine offers no public way to drop an instance
    yield
    for name in set(DefaultScope._instance_dict) - before:
        del DefaultScope._instance_dict[name]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as on the shared test machine (see tests/test_dense.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def image(tmp_path_factory) -> Path:
    """An odd-sized picture, about half the detectors' test size: a grey, noisy background with a red disc and
    a blue bar."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(100, 150, (373, 525, 3)).astype(np.uint8)
    rows, cols = np.mgrid[:373, :525]
    pixels[(rows - 160) ** 2 + (cols - 180) ** 2 < 80 ** 2] = (220, 50, 40)
    pixels[240:320, 320:500] = (40, 60, 210)
    path = tmp_path_factory.mktemp('image') / 'scene.png'
    Image.fromarray(pixels).save(path)
    return path


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == 'PNG'
        return np.asarray(picture.convert('RGB'))


def tiny_config(tmp_path: Path, name: str, model: dict) -> Path:
    """A config file that inherits the project's config ``name`` and overrides ``model`` (what a user's own
    config would do)."""
    path = tmp_path / f'tiny_{name}'
    path.write_text(f'_base_ = [{str(CONFIG_DIR / name)!r}]\nmodel = {model!r}\n')
    return path


def build_model(config: Path):
    """The config's model with its initial weights, as training starts (the backbone's random: init_cfg None)."""
    cfg = Config.fromfile(str(config))
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def save_checkpoint(model, path: Path, classes, palette=None) -> Path:
    """As mmengine's runner saves one: the weights and the training set's classes (and palette)."""
    dataset_meta = dict(classes=classes) if palette is None else dict(classes=classes, palette=palette)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), path)
    return path


def run_tool(tool: Path, argv, monkeypatch, capsys) -> list:
    """Run ``tool`` with ``argv`` as its command line; its printed lines from the one naming the image on."""
    monkeypatch.setattr(sys, 'argv', [tool.name, *map(str, argv)])
    runpy.run_path(str(tool), run_name='__main__')
    printed = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(printed) if line.startswith(f'{argv[0]}: '))
    return printed[first:]


# --------------------------------------------------------------------------------------------------
# Detection


DETECTION = re.compile(r'  (\w+) \(label (\d+)\): ([\d.]+), box \[([-\d., ]+)\](?:, mask (\d+) px)?')


def parse_detections(lines):
    rows = [DETECTION.fullmatch(line) for line in lines]
    assert all(rows), lines
    return [(m[1], int(m[2]), float(m[3]), [float(v) for v in m[4].split(', ')],
             None if m[5] is None else int(m[5])) for m in rows]


def own_detections(config: Path, checkpoint: Path, image: Path):
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(str(config), str(checkpoint), device='cpu')
    return inference_detector(model, str(image)).pred_instances


def check_detections(printed, expected, threshold):
    """The printed detections are the expected ones above ``threshold``, in order, under the checkpoint's names."""
    kept = expected[expected.scores > threshold]
    shown = parse_detections(printed)
    assert [label for _, label, *_ in shown] == kept.labels.tolist()
    assert [name for name, *_ in shown] == [DET_CLASSES[label] for label in kept.labels.tolist()]
    assert [score for _, _, score, *_ in shown] == pytest.approx(kept.scores.tolist(), abs=1e-4)
    assert [box for *_, box, _ in shown] == [pytest.approx(box, abs=0.051) for box in kept.bboxes.tolist()]
    return shown, kept


def threshold_between(scores: torch.Tensor, count: int) -> float:
    """A threshold that keeps exactly the ``count`` best of ``scores`` (sorted, descending)."""
    return round(float(scores[count - 1] + scores[count]) / 2, 6)


def test_det_demo_prints_and_draws_the_checkpoints_detections(image, tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path, 'retinanet_dynamixer-s_fpn_1x_coco.py', dict(
        backbone=TINY_BACKBONE, neck=TINY_NECK,
        bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1, num_classes=len(DET_CLASSES))))
    torch.manual_seed(0)
    checkpoint = save_checkpoint(perturbed(build_model(config)), tmp_path / 'retinanet.pth', DET_CLASSES)
    expected = own_detections(config, checkpoint, image)
    threshold = threshold_between(expected.scores, 5)
    out_file = tmp_path / 'drawn' / 'boxes.png'  # a folder the tool has to make
    printed = run_tool(DET_DEMO, [image, config, checkpoint, '--out-file', out_file, '--score-thr', threshold],
                       monkeypatch, capsys)
    assert printed[0] == f'{image}: 5 of {len(expected)} detections score above {threshold}'
    check_detections(printed[1:6], expected, threshold)
    assert printed[6:] == [f'wrote {out_file}']
    original, drawn = read_rgb(image), read_rgb(out_file)
    assert drawn.shape == original.shape
    assert (drawn != original).any(axis=2).mean() > 0.01

    # Above every score nothing is printed, and nothing drawn: the written image is the input.
    top = float(expected.scores.max())
    out_file = tmp_path / 'nothing.png'
    printed = run_tool(DET_DEMO, [image, config, checkpoint, '--out-file', out_file, '--score-thr', top],
                       monkeypatch, capsys)
    assert printed == [f'{image}: 0 of {len(expected)} detections score above {top}', f'wrote {out_file}']
    np.testing.assert_array_equal(read_rgb(out_file), original)


def test_det_demo_draws_mask_rcnn_masks(image, tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path, 'mask-rcnn_dynamixer-s_fpn_1x_coco.py', dict(
        backbone=TINY_BACKBONE, neck=TINY_NECK, rpn_head=dict(in_channels=32, feat_channels=32),
        roi_head=dict(bbox_roi_extractor=dict(out_channels=32), mask_roi_extractor=dict(out_channels=32),
                      bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=len(DET_CLASSES)),
                      mask_head=dict(in_channels=32, conv_out_channels=32, num_convs=1,
                                     num_classes=len(DET_CLASSES))),
        test_cfg=dict(rpn=dict(min_bbox_size=100))))  # boxes large enough that their outlines cover little
    torch.manual_seed(0)
    model = perturbed(build_model(config))
    with torch.no_grad():  # boxes the size of the RPN's anchors (32 px and up), masks covering most of them
        for regression in (model.rpn_head.rpn_reg, model.roi_head.bbox_head.fc_reg):
            regression.weight.zero_()
            regression.bias.zero_()
        model.roi_head.mask_head.conv_logits.bias.add_(1)
    checkpoint = save_checkpoint(model, tmp_path / 'mask_rcnn.pth', DET_CLASSES)
    expected = own_detections(config, checkpoint, image)
    threshold = threshold_between(expected.scores, 3)
    out_file = tmp_path / 'masks.png'
    printed = run_tool(DET_DEMO, [image, config, checkpoint, '--out-file', out_file, '--score-thr', threshold],
                       monkeypatch, capsys)
    shown, kept = check_detections(printed[1:4], expected, threshold)
    assert [mask for *_, mask in shown] == kept.masks.sum(dim=(1, 2)).tolist()
    assert printed[4:] == [f'wrote {out_file}']
    drawn, original = read_rgb(out_file), read_rgb(image)
    assert drawn.shape == original.shape
    masked = kept.masks.any(dim=0).numpy()
    assert masked.mean() > 0.1
    # Every masked pixel is tinted (a mask colour blended in at 0.8): the boxes' 3-pixel outlines and their labels
    # would change only a small part of these large masks.
    assert (drawn != original).any(axis=2)[masked].mean() > 0.95


# --------------------------------------------------------------------------------------------------
# Segmentation


def seg_config(tmp_path: Path, name: str) -> Path:
    heads = dict(decode_head=dict(in_channels=[32] * 4, num_classes=len(SEG_CLASSES)))
    if name.startswith('upernet'):
        heads = dict(decode_head=dict(heads['decode_head'], channels=32),
                     auxiliary_head=dict(in_channels=32, channels=16, num_classes=len(SEG_CLASSES)))
    return tiny_config(tmp_path, name, dict(backbone=TINY_BACKBONE, neck=TINY_NECK, **heads))


def blend(image: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    return np.floor(image * (1 - opacity) + colours * opacity).astype(np.uint8)


def parse_shares(lines):
    rows = [re.fullmatch(r'  (\w+) \(label (\d+)\): ([\d.]+) %', line) for line in lines]
    assert all(rows), lines
    return [(m[1], int(m[2]), float(m[3])) for m in rows]


def test_seg_demo_prints_the_checkpoints_classes_and_blends_them(image, tmp_path, monkeypatch, capsys):
    config = seg_config(tmp_path, 'fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py')
    torch.manual_seed(0)
    model = perturbed(build_model(config))
    with torch.no_grad():  # enough spread between the classes' logits for several to win somewhere
        model.decode_head.conv_seg.weight.mul_(20)
    checkpoint = save_checkpoint(model, tmp_path / 'fpn.pth', SEG_CLASSES, SEG_PALETTE)
    from mmseg.apis import inference_model, init_model
    label_map = inference_model(init_model(str(config), str(checkpoint), device='cpu'), str(image))
    label_map = label_map.pred_sem_seg.data[0].numpy()
    counts = np.bincount(label_map.ravel(), minlength=len(SEG_CLASSES))
    assert (counts > 0).sum() >= 2, counts  # the test needs a picture of several classes

    out_file = tmp_path / 'classes.png'
    printed = run_tool(SEG_DEMO, [image, config, checkpoint, '--out-file', out_file], monkeypatch, capsys)
    height, width = label_map.shape
    assert printed[0] == f'{image}: {(counts > 0).sum()} of 4 classes in {width} x {height} pixels'
    shares = parse_shares(printed[1:-1])
    assert [label for _, label, _ in shares] == sorted(np.flatnonzero(counts), key=lambda k: -counts[k])
    assert [name for name, *_ in shares] == [SEG_CLASSES[label] for _, label, _ in shares]
    assert [share for *_, share in shares] == pytest.approx([100 * counts[k] / label_map.size
                                                             for _, k, _ in shares], abs=0.006)
    assert printed[-1] == f'wrote {out_file}'
    # Drawn at the default opacity 0.5, each pixel in its predicted class's colour.
    expected = blend(read_rgb(image), np.array(SEG_PALETTE)[label_map], 0.5)
    np.testing.assert_allclose(read_rgb(out_file), expected, rtol=0, atol=1)


def test_seg_demo_one_class_everywhere(image, tmp_path, monkeypatch, capsys):
    """A UperNet whose classifier answers 'path' at every pixel: 100 % path, and the image blended with path's
    colour at the requested opacity."""
    config = seg_config(tmp_path, 'upernet_dynamixer-s_8xb2-160k_ade20k-512x512.py')
    torch.manual_seed(0)
    model = perturbed(build_model(config))
    path_label = SEG_CLASSES.index('path')
    with torch.no_grad():
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.copy_(torch.eye(len(SEG_CLASSES))[path_label] * 10)
    checkpoint = save_checkpoint(model, tmp_path / 'upernet.pth', SEG_CLASSES, SEG_PALETTE)
    out_file = tmp_path / 'path.png'
    printed = run_tool(SEG_DEMO, [image, config, checkpoint, '--out-file', out_file, '--opacity', 0.3],
                       monkeypatch, capsys)
    original = read_rgb(image)
    height, width = original.shape[:2]
    assert printed == [f'{image}: 1 of 4 classes in {width} x {height} pixels',
                       f'  path (label {path_label}): 100.00 %', f'wrote {out_file}']
    expected = blend(original, np.array(SEG_PALETTE[path_label]), 0.3)
    np.testing.assert_allclose(read_rgb(out_file), expected, rtol=0, atol=1)


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize('tool', [DET_DEMO, SEG_DEMO], ids=lambda t: t.stem)
def test_demos_refuse_a_missing_or_damaged_checkpoint(tool, image, tmp_path, monkeypatch, capsys):
    config = CONFIG_DIR / ('retinanet_dynamixer-s_fpn_1x_coco.py' if tool == DET_DEMO
                           else 'fpn_dynamixer-s_8xb4-40k_ade20k-512x512.py')
    monkeypatch.chdir(tmp_path)  # where the default --out-file would go
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(b'<html>404 Not Found</html>')  # what a failed download can leave
    for checkpoint, message in ((tmp_path / 'missing.pth', 'does not exist'), (damaged, 'is not')):
        monkeypatch.setattr(sys, 'argv', [tool.name, str(image), str(config), str(checkpoint)])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(tool), run_name='__main__')
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert str(checkpoint) in error and message in error, error
    assert not (tmp_path / 'result.png').exists()


@pytest.mark.parametrize('tool', [DET_DEMO, SEG_DEMO], ids=lambda t: t.stem)
def test_help(tool, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', [tool.name, '--help'])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(tool), run_name='__main__')
    assert exit_info.value.code == 0
    printed = ' '.join(capsys.readouterr().out.split())
    assert printed.startswith(f'usage: {tool.name} [-h]')
    assert '--device DEVICE device to run on, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)' \
        in printed
