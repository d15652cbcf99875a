"""Class activation maps (mmdynamixer.cam, tools/visualization/vis_cam.py): Grad-CAM of DynaMixer's channels-last
maps against Grad-CAM computed here from its definition, the stage and area a target layer's map covers, the
tool's image and its errors."""
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdynamixer import cam
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
    grayscale, category, scores = cam.class_activation_map(classifier, inputs, [layer], target_category=4)
    expected = grad_cam_by_definition(classifier, inputs, classifier.get_submodule(layer), 4, stride)
    assert category == 4 and grayscale.shape == size
    np.testing.assert_allclose(grayscale, expected, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(scores, classifier(inputs)[0].softmax(dim=-1), atol=1e-6)


def test_the_predicted_class_by_default(classifier):
    inputs = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        predicted = int(classifier(inputs).argmax())
    _, category, _ = cam.class_activation_map(classifier, inputs)
    assert category == predicted


def test_target_layer_stages_and_the_pixels_their_maps_cover():
    backbone = DynaMixerNet('s', num_classes=0)  # stage 0 at stride 7; a stride-2 transition; stages 1-3 at 14
    names = ['patch_embed', 'network.0', 'network.0.3', 'network.1', 'network.2.2', 'network.3.7', 'network.4.2',
             'norm']
    # network.1 is the stride-2 transition into stage 1; stages 1-3 have equal widths, no transitions between.
    assert backbone.stage_positions == [0, 2, 3, 4]
    assert [cam.layer_stage(backbone, name) for name in names] == [0, 0, 0, 1, 1, 2, 3, 3]
    assert [cam.covered_side(side, backbone, stage) for side, stage in
            [(224, 0), (224, 3), (230, 0), (230, 1), (231, 1), (7, 3), (1, 0)]] == [224, 224, 231, 238, 238, 14, 7]
    for name in ['head', 'network.0.0.mlp', 'patch_embed.proj', 'network.9', 'network.2.3']:
        with pytest.raises(ValueError, match='does not output a stage map'):
            cam.layer_stage(backbone, name)


def test_bad_target_layers_method_or_class_are_named(classifier):
    inputs = torch.zeros(1, 3, 56, 56)
    with pytest.raises(ValueError, match=r"'backbone.network.0.0.mlp' does not output .*allowed: backbone.patch_embed"):
        cam.class_activation_map(classifier, inputs, ['backbone.network.0.0.mlp'])
    with pytest.raises(ValueError, match='output maps of different stages'):
        cam.class_activation_map(classifier, inputs, ['backbone.network.0.0', 'backbone.norm'])
    with pytest.raises(ValueError, match=r"method 'scorecam' is not supported: allowed gradcam, gradcam\+\+"):
        cam.class_activation_map(classifier, inputs, method='scorecam')
    with pytest.raises(ValueError, match=r'target_category 10 is out of range: the model has 10 classes, 0..9'):
        cam.class_activation_map(classifier, inputs, target_category=10)
    with pytest.raises(ValueError, match=r'a \(1, 3, H, W\) tensor, got shape \(2, 3, 56, 56\)'):
        cam.class_activation_map(classifier, torch.zeros(2, 3, 56, 56))
    with pytest.raises(ValueError, match='no target layers given'):
        cam.class_activation_map(classifier, inputs, [])
    resnet = build_mmpretrain_model(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                                         neck=dict(type='GlobalAveragePooling'),
                                         head=dict(type='LinearClsHead', num_classes=10, in_channels=512)))
    with pytest.raises(ValueError, match="for DynaMixer classifiers; the model's backbone is ResNet"):
        cam.class_activation_map(resnet, inputs, ['backbone.norm'])


def test_vis_cam_tool_draws_the_map_beside_the_image(classifier, checkpoint, digits, repo, tmp_path, monkeypatch,
                                                      capsys):
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
    grayscale, _, _ = cam.class_activation_map(classifier, inputs)

    out_file = tmp_path / 'cam.png'
    monkeypatch.setattr(sys, 'argv', ['vis_cam.py', str(image), str(repo / DIGITS), str(checkpoint),
                                      '--out-file', str(out_file)])
    runpy.run_path(str(repo / 'tools/visualization/vis_cam.py'), run_name='__main__')
    printed = capsys.readouterr().out.splitlines()
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

    monkeypatch.setattr(sys, 'argv', ['vis_cam.py', str(image), str(repo / DIGITS), str(checkpoint),
                                      '--target-layers', 'backbone.head', '--out-file', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(repo / 'tools/visualization/vis_cam.py'), run_name='__main__')
    assert exit_info.value.code == 2
    assert "target layer 'backbone.head' does not output a DynaMixer stage map" in capsys.readouterr().err
    assert not (tmp_path / 'x.png').exists()


def test_cam_localization_counts_peaks_inside_the_pasted_image(checkpoint, digits, repo, tmp_path, monkeypatch, capsys):
    folder = tmp_path / 'held_out'
    for digit in ('1', '7'):
        (folder / digit).mkdir(parents=True)
        for source in sorted(digits.glob(f'val/{digit}/*.png'))[:4]:
            (folder / digit / source.name).write_bytes(source.read_bytes())
    tool = str(repo / 'tools/analysis/cam_localization.py')
    preprocessor = Config.fromfile(repo / DIGITS).data_preprocessor
    background = (-torch.tensor(preprocessor.mean) / torch.tensor(preprocessor.std)).view(3, 1, 1)  # black, normed

    def run(canvas, peak_offset):
        """The tool with maps that peak at the centre of the ink on each canvas, moved ``peak_offset`` pixels
        sideways (to the right, or to the left where that would leave the canvas)."""
        def fake_map(model, inputs, target_layers, method, label):
            rows, cols = np.nonzero(((inputs[0] - background).abs().sum(0) > 1e-3).numpy())
            row, col = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
            grayscale = np.zeros(inputs.shape[-2:], np.float32)
            grayscale[row, col + peak_offset if col + peak_offset < canvas else col - peak_offset] = 1
            return grayscale, label, torch.nn.functional.one_hot(torch.tensor(label), 10).float()

        monkeypatch.setattr(cam, 'class_activation_map', fake_map)
        monkeypatch.setattr(sys, 'argv', ['cam_localization.py', str(repo / DIGITS), str(checkpoint), str(folder),
                                          '--canvas', str(canvas), '--out-file', str(tmp_path / 'canvases.png')])
        runpy.run_path(tool, run_name='__main__')
        printed = capsys.readouterr().out.splitlines()
        return printed[printed.index(f'8 images of {folder} on {canvas} x {canvas} canvases (seed 0), gradcam at '
                                     'backbone.norm:') + 1:]

    # On 224-pixel canvases a digit off the diagonal would miss a map transposed by mistake.
    assert run(224, 0)[:2] == ["  peak of the true class's map inside the image: 100.0 % (chance 6.2 %)",
                               '  top-1 on the canvases: 100.0 %']
    assert run(224, 56)[0] == "  peak of the true class's map inside the image: 0.0 % (chance 6.2 %)"
    with Image.open(tmp_path / 'canvases.png') as drawn:  # one example per class, 3 to a row, 224 x 448 each
        assert drawn.format == 'PNG' and drawn.size == (3 * 448, 224)
