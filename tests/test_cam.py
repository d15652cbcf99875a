"""Class activation maps (mmdynamixer.integrations.grad_cam, tools/visualization/vis_cam.py,
tools/analysis/cam_localization.py): Grad-CAM of DynaMixer's channels-last maps against Grad-CAM computed here from
its definition, the stage and area a target layer's map covers, the tools' images, counts and errors. The
localization tool runs its real path on a classifier built so that its evidence lies where a pasted patch is."""
import runpy
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdynamixer.integrations import grad_cam
from mmdynamixer.models import DynaMixerNet
from mmdynamixer.testing import build_mmpretrain_model, perturbed

DIGITS = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'


@pytest.fixture(scope='module')
def classifier(repo):
    """The digits config's classifier (stage 0 at stride 7, stages 1-3 at 14), weights moved off their init."""
    return perturbed(build_mmpretrain_model(Config.fromfile(repo / DIGITS).model), seed=3)


@pytest.fixture(scope='module')
def checkpoint(classifier, tmp_path_factory):
    """``classifier`` saved as tools/train.py saves it, with the digits' class names."""
    path = tmp_path_factory.mktemp('cam') / 'digits.pth'
    torch.save({'state_dict': classifier.state_dict(),
                'meta': {'dataset_meta': {'classes': [str(d) for d in range(10)]}}}, path)
    return path


def grad_cam_by_definition(model, inputs, layer, category, stride):
    """Grad-CAM (Selvaraju et al.): ReLU of the channel sum of the layer's map weighted by the spatial mean of
    the class logit's gradient, min-max normalised, bilinearly scaled by ``stride`` and cropped to the input."""
    captured = {}
    handle = layer.register_forward_hook(lambda module, args, output: captured.update(map=output))
    try:
        logits = model(inputs)
    finally:
        handle.remove()
    gradient, = torch.autograd.grad(logits[0, category], captured['map'])
    activation, gradient = captured['map'][0], gradient[0]  # (h, w, C): channels last
    weights = gradient.mean(dim=(0, 1))
    grayscale = torch.relu((activation * weights).sum(dim=-1)).detach().numpy()
    grayscale = (grayscale - grayscale.min()) / (grayscale.max() - grayscale.min() + 1e-7)
    rows, cols = grayscale.shape
    scaled = cv2.resize(grayscale, (cols * stride, rows * stride))[:inputs.shape[2], :inputs.shape[3]]
    return (scaled - scaled.min()) / (scaled.max() - scaled.min())


@pytest.mark.parametrize('layer, stride, size', [
    ('backbone.norm', 14, (56, 56)),
    ('backbone.norm', 14, (50, 90)),  # 8 x 13 tokens, then 4 x 7 cells over 56 x 98 pixels
    ('backbone.network.0.0', 7, (61, 45)),  # stage 0: 9 x 7 cells over 63 x 49 pixels
])
def test_grad_cam_follows_its_definition_on_channels_last_maps(classifier, layer, stride, size):
    inputs = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    grayscale, category, scores = grad_cam.class_activation_map(classifier, inputs, [layer], target_category=4)
    expected = grad_cam_by_definition(classifier, inputs, classifier.get_submodule(layer), 4, stride)
    assert category == 4 and grayscale.shape == size
    np.testing.assert_allclose(grayscale, expected, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(scores, classifier(inputs)[0].softmax(dim=-1), atol=1e-6)


def test_the_predicted_class_by_default(classifier):
    inputs = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        predicted = int(classifier(inputs).argmax())
    _, category, _ = grad_cam.class_activation_map(classifier, inputs)
    assert category == predicted


def test_target_layer_stages_and_the_pixels_their_maps_cover():
    backbone = DynaMixerNet('s', num_classes=0)  # stage 0 at stride 7; a stride-2 transition; stages 1-3 at 14
    names = ['patch_embed', 'network.0', 'network.0.3', 'network.1', 'network.2.2', 'network.3.7', 'network.4.2',
             'norm']
    # network.1 is the stride-2 transition into stage 1; stages 1-3 have equal widths, no transitions between.
    assert backbone.stage_positions == [0, 2, 3, 4]
    assert [grad_cam.layer_stage(backbone, name) for name in names] == [0, 0, 0, 1, 1, 2, 3, 3]
    assert [grad_cam.covered_side(side, backbone, stage) for side, stage in
            [(224, 0), (224, 3), (230, 0), (230, 1), (231, 1), (7, 3), (1, 0)]] == [224, 224, 231, 238, 238, 14, 7]
    for name in ['head', 'network.0.0.mlp', 'patch_embed.proj', 'network.9', 'network.2.3']:
        with pytest.raises(ValueError, match='does not output a stage map'):
            grad_cam.layer_stage(backbone, name)


def test_bad_target_layers_method_or_class_are_named(classifier):
    inputs = torch.zeros(1, 3, 56, 56)
    with pytest.raises(ValueError, match=r"'backbone.network.0.0.mlp' does not output .*allowed: backbone.patch_embed"):
        grad_cam.class_activation_map(classifier, inputs, ['backbone.network.0.0.mlp'])
    with pytest.raises(ValueError, match='output maps of different stages'):
        grad_cam.class_activation_map(classifier, inputs, ['backbone.network.0.0', 'backbone.norm'])
    with pytest.raises(ValueError, match=r"method 'scorecam' is not supported: allowed gradcam, gradcam\+\+"):
        grad_cam.class_activation_map(classifier, inputs, method='scorecam')
    with pytest.raises(ValueError, match=r'target_category 10 is out of range: the model has 10 classes, 0..9'):
        grad_cam.class_activation_map(classifier, inputs, target_category=10)
    with pytest.raises(ValueError, match=r'a \(1, 3, H, W\) tensor, got shape \(2, 3, 56, 56\)'):
        grad_cam.class_activation_map(classifier, torch.zeros(2, 3, 56, 56))
    with pytest.raises(ValueError, match='no target layers given'):
        grad_cam.class_activation_map(classifier, inputs, [])
    resnet = build_mmpretrain_model(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                                         neck=dict(type='GlobalAveragePooling'),
                                         head=dict(type='LinearClsHead', num_classes=10, in_channels=512)))
    with pytest.raises(ValueError, match="for DynaMixer classifiers; the model's backbone is ResNet"):
        grad_cam.class_activation_map(resnet, inputs, ['backbone.norm'])


def run_tool(tool, argv, monkeypatch, capsys):
    """Run the tool (a path in the repository) in this process with ``argv``; its printed lines."""
    monkeypatch.setattr(sys, 'argv', [tool.name, *map(str, argv)])
    runpy.run_path(str(tool), run_name='__main__')
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize('tool', ['tools/visualization/vis_cam.py', 'tools/analysis/cam_localization.py'])
def test_help(tool, repo, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(repo / tool, ['--help'], monkeypatch, capsys)
    assert exit_info.value.code == 0
    printed = ' '.join(capsys.readouterr().out.split())
    assert '--device DEVICE' in printed and '(default: cuda when available, else cpu)' in printed


def test_vis_cam_tool_draws_the_map_beside_the_image(classifier, checkpoint, digits, repo, tmp_path, monkeypatch,
                                                      capsys):
    tool = repo / 'tools/visualization/vis_cam.py'
    # A held-out 7 in red, so a swap of red and blue anywhere shows.
    grey = np.asarray(Image.open(sorted(digits.glob('val/7/*.png'))[0]).convert('L'))
    red = np.stack([grey, grey // 4, np.zeros_like(grey)], axis=-1)
    image = tmp_path / 'red7.png'
    Image.fromarray(red).save(image)
    cfg = Config.fromfile(repo / DIGITS).data_preprocessor
    mean, std = (torch.tensor(cfg[k]).view(3, 1, 1) for k in ('mean', 'std'))
    inputs = ((torch.from_numpy(red).permute(2, 0, 1).float() - mean) / std)[None]  # RGB, as the config says
    with torch.no_grad():
        scores = classifier(inputs)[0].softmax(dim=-1)
    predicted = int(scores.argmax())
    grayscale = grad_cam_by_definition(classifier, inputs, classifier.backbone.norm, predicted, 14)

    out_file = tmp_path / 'cam.png'
    printed = run_tool(tool, [image, repo / DIGITS, checkpoint, '--out-file', out_file], monkeypatch, capsys)
    assert f'{image}: predicted {predicted} (label {predicted}), score {scores[predicted]:.4f}' in printed
    assert f'gradcam for {predicted} (label {predicted}) (score {scores[predicted]:.4f}) at backbone.norm' in printed
    assert printed[-1] == f'wrote {out_file}'
    with Image.open(out_file) as drawn:
        assert drawn.format == 'PNG' and drawn.size == (448, 224)  # 56 x 56 input and overlay, enlarged 4x
        strip = np.asarray(drawn.convert('RGB')).astype(int)
    np.testing.assert_array_equal(strip[:, :224], red.repeat(4, axis=0).repeat(4, axis=1))  # the input, left
    # On the right the jet colour map over it (about half of each pixel): red where the map peaks, blue where it
    # is lowest; swapped channels would show the opposite.
    hottest, coldest = (np.unravel_index(f(grayscale), grayscale.shape) for f in (np.argmax, np.argmin))
    peak, low = (strip[4 * row + 2, 224 + 4 * col + 2] - red[row, col] / 2 for row, col in (hottest, coldest))
    assert peak[0] - peak[2] > 40 and low[2] - low[0] > 40, (peak, low)

    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool, [image, repo / DIGITS, checkpoint, '--target-layers', 'backbone.head', '--out-file',
                        tmp_path / 'x.png'], monkeypatch, capsys)
    assert exit_info.value.code == 2
    assert "target layer 'backbone.head' does not output a DynaMixer stage map" in capsys.readouterr().err
    assert not (tmp_path / 'x.png').exists()


PATCH, INK = 42, 28  # the pasted images: a grey frame around a white square (no pixel black, as the canvas is)


@pytest.fixture(scope='module')
def evidence_at_the_ink(repo):
    """The digits classifier made to find its evidence where the white is. Its layers' residual branches are
    zeroed, which leaves the backbone local (patch embedding, transition, norms: each 14 x 14-pixel cell of the
    last map sees only its pixels); every class's head row is the direction from a black cell's features to a
    white cell's (plus some noise), so each class's logit gathers, cell by cell, how white the cell is. A full
    white cell then outscores a black one by the direction's squared length, and the peak of every class's
    map lies on the white square."""
    cfg = Config.fromfile(repo / DIGITS)
    model = perturbed(build_mmpretrain_model(cfg.model), seed=3)
    mean, std = (torch.tensor(cfg.data_preprocessor[k]).view(3, 1, 1) for k in ('mean', 'std'))
    with torch.no_grad():
        for name, module in model.backbone.named_modules():
            if name.endswith(('attn.proj', 'mlp.fc2')):
                module.weight.zero_()
                module.bias.zero_()
        white, black = (model.backbone(((torch.full((3, 28, 28), value) - mean) / std)[None])[-1].mean(dim=(2, 3))
                        for value in (255.0, 0.0))  # the last map's features, (1, C), of 2 x 2 cells all alike
        direction = (white - black)[0]
        noise = torch.randn(model.head.fc.weight.shape, generator=torch.Generator().manual_seed(0))
        model.head.fc.weight.copy_(direction + noise * 0.02 * direction.norm())
    return model.eval()


def test_cam_localization_finds_the_pasted_evidence(evidence_at_the_ink, repo, tmp_path, monkeypatch, capsys):
    model = evidence_at_the_ink
    checkpoint = tmp_path / 'evidence.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': [str(d) for d in range(10)]}}},
               checkpoint)
    folder = tmp_path / 'held_out'
    image = np.full((PATCH, PATCH, 3), 90, np.uint8)
    margin = (PATCH - INK) // 2
    image[margin:margin + INK, margin:margin + INK] = 255
    for digit in ('3', '8'):
        (folder / digit).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(image).save(folder / digit / f'{k}.png')

    # The real map, watched: what the tool gave it and what it answered.
    calls = []
    real = grad_cam.class_activation_map

    def watched(model, inputs, target_layers, method, label):
        result = real(model, inputs, target_layers, method, label)
        calls.append((inputs.clone(), label, result[0]))
        return result

    monkeypatch.setattr(grad_cam, 'class_activation_map', watched)
    out_file = tmp_path / 'canvases.png'
    tool = repo / 'tools/analysis/cam_localization.py'
    # A canvas wider than high: a map with rows and columns swapped would neither fit nor peak on the patch.
    printed = run_tool(tool, [repo / DIGITS, checkpoint, folder, '--size', 112, 168, '--seed', 5,
                              '--out-file', out_file], monkeypatch, capsys)

    assert [label for _, label, _ in calls] == [3] * 5 + [8] * 5
    preprocessor = Config.fromfile(repo / DIGITS).data_preprocessor
    black = (-torch.tensor(preprocessor.mean) / torch.tensor(preprocessor.std)).view(3, 1)  # the canvas, normed
    hits = correct = 0
    places = set()
    for inputs, label, grayscale in calls:
        assert inputs.shape == (1, 3, 112, 168) and grayscale.shape == (112, 168)
        rows, cols = np.nonzero((inputs[0].flatten(1) - black).abs().sum(0).view(112, 168).numpy() > 1e-3)
        top, left = rows.min(), cols.min()
        assert (rows.max() - top, cols.max() - left) == (PATCH - 1, PATCH - 1)  # the pasted image, found
        places.add((top, left))
        own = grad_cam_by_definition(model, inputs, model.backbone.norm, label, 14)
        np.testing.assert_allclose(grayscale, own, atol=1e-4)
        row, col = np.unravel_index(own.argmax(), own.shape)
        hits += top + margin <= row < top + margin + INK and left + margin <= col < left + margin + INK  # the white
        with torch.no_grad():
            correct += int(model(inputs).argmax()) == label
    assert len(places) == 10  # ten places, so the count is not one placement ten times
    assert hits == 10, f'the peak left the white square on {10 - hits} canvases'
    header = printed.index(f'10 images of {folder} on 112 x 168 canvases (seed 5), gradcam at backbone.norm:')
    assert printed[header + 1:] == [
        f"  peak of the true class's map inside the image: 100.0 % (chance {100 * PATCH ** 2 / (112 * 168):.1f} %)",
        f'  top-1 on the canvases: {10 * correct:.1f} %',
        f"wrote {out_file} (canvas and the true class's map; the box green where the peak hits)"]
    with Image.open(out_file) as drawn:  # one example per class and a blank, 3 to a row, 224 x 672 each
        assert drawn.format == 'PNG' and drawn.size == (3 * 672, 224)


def test_cam_localization_counts_misses_and_takes_the_old_canvas_flag(evidence_at_the_ink, repo, tmp_path,
                                                                      monkeypatch, capsys):
    """Two images with a white square in a corner, whose peak lands on it, and two all black, whose maps are
    flat, so that their peak is the canvas's first pixel, outside them: half the peaks hit. On a square canvas
    given by the deprecated --canvas."""
    checkpoint = tmp_path / 'evidence.pth'
    torch.save({'state_dict': evidence_at_the_ink.state_dict(),
                'meta': {'dataset_meta': {'classes': [str(d) for d in range(10)]}}}, checkpoint)
    folder = tmp_path / 'held_out'
    (folder / '1').mkdir(parents=True)
    for k in range(4):
        image = np.zeros((56, 56, 3), np.uint8)
        if k % 2:
            image[:28, :28] = 255  # top-left quarter white
        Image.fromarray(image).save(folder / '1' / f'{k}.png')
    tool = repo / 'tools/analysis/cam_localization.py'
    with pytest.warns(FutureWarning, match='--canvas is deprecated and will be removed in the next release; use '
                                           '--size'):
        printed = run_tool(tool, [repo / DIGITS, checkpoint, folder, '--canvas', 140, '--examples', 0],
                           monkeypatch, capsys)
    header = printed.index(f'4 images of {folder} on 140 x 140 canvases (seed 0), gradcam at backbone.norm:')
    assert printed[header + 1] == "  peak of the true class's map inside the image: 50.0 % (chance 16.0 %)"

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        with pytest.raises(SystemExit) as exit_info:
            run_tool(tool, [repo / DIGITS, checkpoint, folder, '--canvas', 0], monkeypatch, capsys)
    assert exit_info.value.code == 2 and '--canvas 0 is not a positive number of pixels' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool, [repo / DIGITS, checkpoint, folder, '--size', 40, 100], monkeypatch, capsys)
    assert exit_info.value.code == 2
    assert (f'the canvas (40 x 100, --size) is smaller than {folder / "1" / "0.png"} (56 x 56)'
            in capsys.readouterr().err)
