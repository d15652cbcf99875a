"""The tools' one flag vocabulary (mmdynamixer.cli): what each flag accepts, stores and refuses."""
import argparse
import json
import warnings

import pytest
import torch

from mmdynamixer import cli

TINY = dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 32], resolutions=[8, 4, 4, 4], num_segments=[2, 4, 4, 4],
            reduced_dims=[2, 2, 2, 2], transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3])


def parser_with(*adders):
    parser = argparse.ArgumentParser(prog='tool')
    for add in adders:
        add(parser)
    return parser


def refused(parser, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_size_is_height_then_width_or_one_side_for_a_square(capsys):
    parser = parser_with(cli.add_size_argument)
    assert parser.parse_args([]).size == (224, 224)
    assert parser.parse_args(['--size', '800', '1333']).size == (800, 1333)
    assert parser.parse_args(['--size', '96']).size == (96, 96)
    assert '1 2 3' in refused(parser, ['--size', '1', '2', '3'], capsys)
    assert 'positive' in refused(parser, ['--size', '0', '5'], capsys)


def test_size_without_default_is_none_until_given():
    parser = parser_with(lambda p: cli.add_size_argument(p, default=None))
    assert parser.parse_args([]).size is None
    assert '(required)' in parser.format_help()


def test_sizes_are_height_x_width(capsys):
    parser = parser_with(lambda p: cli.add_sizes_argument(p, ['224x224']))
    assert parser.parse_args([]).sizes == [(224, 224)]
    assert parser.parse_args(['--sizes', '800x1333', '512X512']).sizes == [(800, 1333), (512, 512)]
    for bad in ('800', '800x', '0x5', '8x8x8', 'axb'):
        assert repr(bad) in refused(parser, ['--sizes', bad], capsys)


def test_arch_takes_names_and_json_dicts_and_names_what_is_allowed(capsys):
    parser = parser_with(cli.add_arch_argument)
    assert parser.parse_args([]).arch == ['s']
    assert parser.parse_args(['--arch', 'S', 'l', json.dumps(TINY)]).arch == ['s', 'l', TINY]
    assert 'allowed: l, m, s or a JSON arch dict' in refused(parser, ['--arch', 'xl'], capsys)
    assert 'not valid JSON' in refused(parser, ['--arch', '{"layers": [1,'], capsys)
    error = refused(parser, ['--arch', json.dumps(dict(TINY, layers=[1, 1]))], capsys)
    assert 'is not a DynaMixer arch' in error


def test_precision_takes_one_or_more_of_its_choices(capsys):
    parser = parser_with(lambda p: cli.add_precision_argument(p, ['fp32', 'bf16', 'fp16']))
    assert parser.parse_args([]).precision == ['fp32']
    assert parser.parse_args(['--precision', 'bf16', 'fp16']).precision == ['bf16', 'fp16']
    assert "invalid choice: 'int8'" in refused(parser, ['--precision', 'int8'], capsys)


@pytest.mark.parametrize('cuda', [True, False])
def test_device_defaults_to_cuda_when_available(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    assert parser_with(cli.add_device_argument).parse_args([]).device == ('cuda' if cuda else 'cpu')


def test_deprecated_alias_stores_like_the_new_flag_and_warns():
    parser = parser_with(lambda p: p.add_argument('--out-file'),
                         lambda p: cli.add_deprecated_alias(p, '--out', '--out-file', 'out_file'))
    assert '--out ' not in parser.format_help()  # hidden: the help shows the vocabulary only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert parser.parse_args(['--out', 'a.onnx']).out_file == 'a.onnx'
        assert parser.parse_args(['--out-file', 'b.onnx']).out_file == 'b.onnx'
    assert [(w.category, str(w.message)) for w in caught] == [
        (FutureWarning, '--out is deprecated and will be removed in the next release; use --out-file')]
