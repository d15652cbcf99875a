"""Export at any size: torch.export and ONNX (torch's dynamo exporter, through tools/deployment/pytorch2onnx.py)
with dynamic batch, height and width give the eager model's outputs at sizes other than the traced one, and the
oneDNN custom ops never reach an exported graph."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch.export import Dim

from mmdynamixer.models import DynaMixerNet
from mmdynamixer.ops import onednn_linear
from mmdynamixer.testing import TINY_ARCH, perturbed

REPO = Path(__file__).resolve().parents[1]
# The case (a trace at 231 x 350 went wrong at 333 x 517), a square, a side under one window, a 1-pixel
# image (one patch of padding), sizes that are and are not multiples of the patch and of the windows.
SIZES = [(333, 517), (224, 224), (13, 90), (57, 64), (1, 1)]


def relative_error(actual, expected) -> float:
    return ((torch.as_tensor(actual) - expected).abs().max() / expected.abs().max()).item()


def load_tool():
    spec = importlib.util.spec_from_file_location('pytorch2onnx', REPO / 'tools/deployment/pytorch2onnx.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Maps(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


@pytest.fixture(scope='module')
def backbone():
    """A dense backbone: several outputs, each through its own norm."""
    return perturbed(DynaMixerNet(TINY_ARCH, num_classes=0, out_indices=(0, 1, 2, 3), final_norm=False))


@pytest.fixture(scope='module')
def exported_backbone(backbone):
    x = torch.randn(2, 3, 231, 350)
    # DYNAMIC rather than a named Dim: export's solver cannot prove ceil(width / 7) > 0 for a declared range, and
    # refuses it; as torch.onnx does, sizes of 1 reason like any other size (no guard for 1 or for >= 2).
    dims = {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        return torch.export.export(Maps(backbone), (x,), dynamic_shapes=(dims,))


def test_torch_export_matches_eager_at_other_sizes(backbone, exported_backbone):
    program = exported_backbone.module()
    for batch, (height, width) in zip([1, 3, 1, 2, 1], SIZES):
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = backbone.forward_features(x)
            actual = program(x)
        for stage, (ours, theirs) in enumerate(zip(actual, expected)):
            assert ours.shape == theirs.shape, (height, width, stage)
            assert relative_error(ours, theirs) <= 1e-4, (height, width, stage)


def test_onednn_op_never_in_exported_graph(backbone, exported_backbone):
    # Eager at the traced size takes the custom op (on a CPU with oneDNN), so its absence is the export's doing.
    tokens = torch.randn(2, 33, 50, 16)
    if not onednn_linear.onednn_applies(tokens, backbone.network[0][0].mlp.fc1.weight):
        pytest.skip('oneDNN linear not available here: eager does not use the custom op either')
    targets = {str(node.target) for node in exported_backbone.graph.nodes if node.op == 'call_function'}
    assert not [t for t in targets if 'mmdynamixer' in t]
    assert 'aten.linear.default' in targets


def onnx_outputs(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def test_pytorch2onnx_classifier_dynamic(tmp_path, capsys):
    """The digits config (an mmpretrain ImageClassifier) with its checkpoint: one dynamic file serves every size."""
    tool = load_tool()
    from mmengine.config import Config

    cfg = Config.fromfile(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py')
    model, _ = tool.build(cfg, None)
    perturbed(model)
    checkpoint, onnx_file = tmp_path / 'digits.pth', tmp_path / 'digits.onnx'
    torch.save(dict(state_dict=model.model.state_dict()), checkpoint)
    tool.main([str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'), str(checkpoint), '--out',
               str(onnx_file), '--shape', '56', '56', '--dynamic', '--check-shapes', '231', '350', '1', '1'])
    report = capsys.readouterr().out
    assert 'OK: ' in report and '2x3x231x350 logits (2, 10)' in report
    for batch, (height, width) in zip([1, 3, 1, 2, 1], SIZES):
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model(x)
        (actual,) = onnx_outputs(onnx_file, x)
        assert actual.shape == expected.shape
        assert relative_error(actual, expected) <= 1e-4, (height, width)


def test_pytorch2onnx_takes_the_backbone_of_a_detector_checkpoint(tmp_path):
    """A detection config: the tool exports its backbone (strides 7 and 14, final_norm=False), with the weights
    under ``backbone.`` in a detector checkpoint."""
    tool = load_tool()
    from mmengine.config import Config

    config = tmp_path / 'retinanet_tiny.py'
    config.write_text(f"_base_ = ['{REPO}/configs/dynamixer/retinanet_dynamixer-s_fpn_1x_coco.py']\n"
                      f"model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r})))\n")
    source, names = tool.build(Config.fromfile(config), None)
    assert names == ['stage0', 'stage3'] and source.final_norm is False
    perturbed(source)
    checkpoint = tmp_path / 'retinanet.pth'
    detector_state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    detector_state['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)  # not the backbone's: ignored
    torch.save(dict(state_dict=detector_state), checkpoint)
    loaded, _ = tool.build(Config.fromfile(config), str(checkpoint))
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        for ours, theirs in zip(loaded(x), source(x)):
            assert torch.equal(ours, theirs)
