"""Export at any size: torch.export and ONNX (mmdynamixer.export, through tools/deployment/pytorch2onnx.py) with
dynamic batch, height and width give the eager model's outputs at sizes other than the traced one; the ONNX file
takes its name only once onnxruntime agrees with eager; a static file refuses other sizes; the oneDNN custom ops
never reach an exported graph."""
import runpy
import sys

import pytest
import torch

from conftest import REPO
from mmdynamixer.export import ExportMismatch, dynamic_shapes, export_onnx
from mmdynamixer.models import DynaMixerNet
from mmdynamixer.ops import onednn_linear
from mmdynamixer.testing import TINY_ARCH, perturbed

TOOL = str(REPO / 'tools/deployment/pytorch2onnx.py')
# The case (a trace at 231 x 350 went wrong at 333 x 517), a square, a side under one window, a 1-pixel
# image (one patch of padding), sizes that are and are not multiples of the patch and of the windows.
SIZES = [(333, 517), (224, 224), (13, 90), (57, 64), (1, 1)]


def relative_error(actual, expected) -> float:
    return ((torch.as_tensor(actual) - expected).abs().max() / expected.abs().max()).item()


def load_tool():
    return runpy.run_path(TOOL)


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
    # As torch.onnx does, sizes of 1 reason like any other size (no guard for 1 or for >= 2).
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        return torch.export.export(Maps(backbone), (x,), dynamic_shapes=dynamic_shapes())


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
        pytest.skip('machine: no oneDNN linear here, so eager does not use the custom op either')
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
    model, _ = tool['build'](cfg, None)
    perturbed(model)
    checkpoint, onnx_file = tmp_path / 'digits.pth', tmp_path / 'digits.onnx'
    torch.save(dict(state_dict=model.model.state_dict()), checkpoint)
    tool['main']([str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'), str(checkpoint), '--out-file',
                  str(onnx_file), '--size', '56', '56', '--dynamic', '--sizes', '231x350', '1x1'])
    report = capsys.readouterr().out
    assert 'OK: ' in report and '2x3x231x350 logits (2, 10)' in report and '1x3x1x1 logits (1, 10)' in report
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
    source, names = tool['build'](Config.fromfile(config), None)
    assert names == ['stage0', 'stage3'] and source.final_norm is False
    perturbed(source)
    checkpoint = tmp_path / 'retinanet.pth'
    detector_state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    detector_state['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)  # not the backbone's: ignored
    torch.save(dict(state_dict=detector_state), checkpoint)
    loaded, _ = tool['build'](Config.fromfile(config), str(checkpoint))
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        for ours, theirs in zip(loaded(x), source(x)):
            assert torch.equal(ours, theirs)


class ExportedDiffers(torch.nn.Module):
    """x + 1 in the exported graph, x in eager: a file onnxruntime runs, whose values are wrong."""

    def forward(self, x):
        return x + 1 if torch.compiler.is_exporting() else x


def test_a_file_that_differs_from_eager_never_takes_the_name(tmp_path):
    target = tmp_path / 'model.onnx'
    target.write_bytes(b'an earlier export')
    with pytest.raises(ExportMismatch, match='not written') as error:
        export_onnx(ExportedDiffers(), str(target), (8, 8), output_names=['out'])
    assert error.value.differences[0].abs_diff == pytest.approx(1.0)
    assert target.read_bytes() == b'an earlier export' and sorted(tmp_path.iterdir()) == [target]
    export_onnx(torch.nn.Identity(), str(target), (8, 8), output_names=['out'])  # agrees: replaces it
    (actual,) = onnx_outputs(target, torch.ones(1, 3, 8, 8))
    assert (actual == 1).all() and sorted(tmp_path.iterdir()) == [target]


class ExportedOutputs(torch.nn.Module):
    """``exported`` outputs in the exported graph, ``eager`` in eager mode, each the input itself."""

    def __init__(self, exported: int, eager: int):
        super().__init__()
        self.exported, self.eager = exported, eager

    def forward(self, x):
        return (x,) * (self.exported if torch.compiler.is_exporting() else self.eager)


@pytest.mark.parametrize('exported, eager', [(2, 1), (1, 2)])
def test_an_extra_or_missing_output_is_refused_by_count(tmp_path, exported, eager):
    target = tmp_path / 'model.onnx'
    with pytest.raises(ValueError, match=rf'1x3x8x8: onnxruntime gives {exported} output\(s\), eager {eager}, and '
                                         r"output_names names 1 \(\['out'\]\)"):
        export_onnx(ExportedOutputs(exported, eager), str(target), (8, 8), output_names=['out'])
    assert list(tmp_path.iterdir()) == []


def test_a_static_graph_refuses_other_sizes(tmp_path, capsys):
    with pytest.raises(ValueError, match='a static graph accepts only 1x3x8x8'):
        export_onnx(torch.nn.Identity(), str(tmp_path / 'x.onnx'), (8, 8), check_shapes=[(1, 9, 8)])
    with pytest.raises(SystemExit):
        load_tool()['main']([str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'), '--out-file',
                             str(tmp_path / 'x.onnx'), '--size', '56', '56', '--sizes', '231x350'])
    assert '--sizes 231x350 needs --dynamic: a static file accepts only' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_pytorch2onnx_old_flags_still_work_with_a_warning(tmp_path):
    with pytest.warns(FutureWarning) as warned:
        _, args = load_tool()['parse_args']([str(REPO / 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'),
                                             '--out', 'x.onnx', '--shape', '56', '64', '--dynamic',
                                             '--check-shapes', '231', '350', '1', '1'])
    assert (args.out_file, args.size, args.sizes) == ('x.onnx', (56, 64), [(231, 350), (1, 1)])
    assert sorted(str(w.message).split()[0] for w in warned) == ['--check-shapes', '--out', '--shape']


def test_pytorch2onnx_help_shows_the_flag_vocabulary(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['pytorch2onnx.py', '--help'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(TOOL, run_name='__main__')
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert all(f'{flag} ' in shown for flag in ('--out-file', '--size', '--sizes', '--dynamic'))


def test_an_older_torch_is_refused_by_version(tmp_path, monkeypatch):
    """On torch < 2.6 (no Dim.DYNAMIC, no external_data) the export refuses, naming the version, and writes
    nothing."""
    monkeypatch.setattr(torch, '__version__', '2.5.1+cpu')
    for export in (lambda: export_onnx(torch.nn.Identity(), str(tmp_path / 'x.onnx'), (8, 8)), dynamic_shapes):
        with pytest.raises(RuntimeError, match=r'need torch >= 2\.6 .*; this is torch 2\.5\.1\+cpu$'):
            export()
    assert list(tmp_path.iterdir()) == []
