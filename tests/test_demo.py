"""The digits demo's tools: tools/demo/image_demo.py on a held-out digit with a checkpoint trained by
tools/train.py (printed top-k, a valid PNG, the checkpoint's own prediction), tools/demo/summarize_run.py on
that run and on fabricated work_dirs (its summary and its training curves PNG), prepare_digits.py's sizes,
dynamixer_resample.py on the trained checkpoint, and every tool's --help and deprecated flags."""
import argparse
import json
import os
import runpy
import shlex
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdynamixer.cli import check_inputs
from mmdynamixer.engine import mmengine_checkpoint_loading
from mmdynamixer.testing import build_mmpretrain_model

DIGITS = 'configs/dynamixer/dynamixer-tiny_2xb64_digits.py'
SUMMARY = 'tools/demo/summarize_run.py'
CURVES_PIXELS = (1000, 400)  # summarize_run.py's figure: 10 x 4 inches at 100 dpi


def assert_png(path, size):
    with Image.open(path) as image:
        assert image.format == 'PNG' and image.size == size
        image.load()  # decodes the whole file: a truncated one raises


@pytest.fixture(scope='module')
def trained(digits, repo, tmp_path_factory):
    """tools/train.py on the digits config for one epoch of 128 images (2 iterations), validated on 40 held-out
    images: the work_dir and its best checkpoint."""
    work_dir = tmp_path_factory.mktemp('digits_work_dir')
    options = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.dataset.indices=128',
               'val_dataloader.dataset.indices=40', 'train_dataloader.num_workers=0',
               'val_dataloader.num_workers=0']
    subprocess.run([sys.executable, str(repo / 'tools/train.py'), str(repo / DIGITS), '--work-dir', str(work_dir),
                    '--no-persistent-workers', '--cfg-options', *options], cwd=digits.parents[1], check=True,
                   capture_output=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    best = sorted(work_dir.glob('best_accuracy_top1_epoch_*.pth'))
    assert [p.name for p in best] == ['best_accuracy_top1_epoch_1.pth']
    return work_dir, best[0]


def own_scores(repo, checkpoint, images):
    """Class probabilities of the checkpoint's model, run here: the config's model and normalisation, no tool."""
    cfg = Config.fromfile(repo / DIGITS)
    model = build_mmpretrain_model(cfg.model).eval()
    with mmengine_checkpoint_loading():
        model.load_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict'])
    assert cfg.data_preprocessor.to_rgb  # mean and std are given in RGB order
    mean, std = (torch.tensor(cfg.data_preprocessor[k]).view(3, 1, 1) for k in ('mean', 'std'))
    pixels = [torch.from_numpy(np.asarray(Image.open(p).convert('RGB'), dtype=np.float32)).permute(2, 0, 1)
              for p in images]
    with torch.no_grad():
        return model((torch.stack(pixels) - mean) / std, mode='tensor').softmax(dim=1)


def test_image_demo_prints_the_checkpoints_prediction_and_draws_it(trained, digits, repo, tmp_path, monkeypatch,
                                                                   capsys):
    _, checkpoint = trained
    # Of a few held-out digits, the one the model separates most clearly from its runner-up (an almost-tie could
    # flip on rounding, which is not what this test is about).
    images = sorted(digits.glob('val/*/*.png'))[::36]
    scores = own_scores(repo, checkpoint, images)
    top2 = scores.topk(2, dim=1).values
    chosen = int((top2[:, 0] - top2[:, 1]).argmax())
    image, expected = images[chosen], scores[chosen]

    out_file = tmp_path / 'result.png'
    monkeypatch.setattr(sys, 'argv', ['image_demo.py', str(image), str(repo / DIGITS), str(checkpoint),
                                      '--topk', '3', '--out-file', str(out_file)])
    runpy.run_path(str(repo / 'tools/demo/image_demo.py'), run_name='__main__')
    printed = capsys.readouterr().out.splitlines()
    printed = printed[printed.index(f'{image}: top 3 of 10 classes'):]  # after mmengine's log lines
    shown = [line.split() for line in printed[1:4]]  # '1.', class name, '(label', 'k):', score
    labels = [int(words[3].rstrip('):')) for words in shown]
    assert [words[1] for words in shown] == [str(label) for label in labels]  # digits' classes: folders '0'-'9'
    assert labels[0] == int(expected.argmax())
    assert [float(words[4]) for words in shown] == pytest.approx(expected[labels].tolist(), abs=1e-4)
    assert sorted(expected.tolist(), reverse=True)[:3] == pytest.approx(expected[labels].tolist(), abs=1e-6)
    assert printed[4] == f'wrote {out_file}'
    with Image.open(out_file) as drawn:
        assert drawn.format == 'PNG' and min(drawn.size) >= 224  # the 56-pixel digit enlarged for its label
        drawn.load()


def test_summary_of_the_trained_run(trained, repo, digits):
    work_dir, checkpoint = trained
    run = subprocess.run([sys.executable, SUMMARY, str(work_dir), DIGITS, '--image', 'data/digits/val/0/x.png'],
                         cwd=repo, capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0].startswith('Best accuracy/top1: ') and lines[0].endswith(' % at epoch 1 (validated at epochs 1)')
    logged = [json.loads(line) for path in work_dir.glob('*/vis_data/scalars.json') for line in path.open()]
    top1 = [r['accuracy/top1'] for r in logged if 'accuracy/top1' in r]
    assert len(top1) == 1 and lines[0] == f'Best accuracy/top1: {top1[0]:.2f} % at epoch 1 (validated at epochs 1)'
    assert lines[1] == f'Checkpoint: {checkpoint}'
    assert shlex.split(lines[3])[1:] == ['tools/demo/image_demo.py', 'data/digits/val/0/x.png', DIGITS,
                                         str(checkpoint), '--out-file', 'result.png']
    assert lines[4:] == [f'Training curves: {work_dir / "curves.png"}']
    assert_png(work_dir / 'curves.png', CURVES_PIXELS)
    loss_axes, top1_axes = runpy.run_path(str(repo / SUMMARY))['curves_figure'](str(work_dir), DIGITS).axes
    assert loss_axes.lines[0].get_xydata().tolist() == [[r['step'], r['loss']] for r in logged if 'loss' in r]
    assert top1_axes.lines[0].get_xydata().tolist() == [[1, top1[0]]]


def _fabricate_run(work_dir, runs, checkpoints, pointer=None, losses=None):
    """A work_dir as mmengine leaves it: ``<timestamp>/vis_data/scalars.json`` per run (train lines by iteration,
    10 an epoch: ``losses[timestamp]`` as (iteration, loss) pairs, else one line in the epoch of the run's first
    validation; validation lines by epoch), checkpoint files, a last_checkpoint pointer."""
    for timestamp, val in runs.items():
        folder = work_dir / timestamp / 'vis_data'
        folder.mkdir(parents=True)
        logged = (losses or {}).get(timestamp, [((val[0][0] - 1) * 10 + 5, 2.3)])
        lines = [dict(lr=1e-3, loss=loss, epoch=(iteration - 1) // 10 + 1, iter=iteration, step=iteration)
                 for iteration, loss in logged]
        lines += [{'accuracy/top1': top1, 'data_time': 0.01, 'time': 0.1, 'step': epoch} for epoch, top1 in val]
        (folder / 'scalars.json').write_text(''.join(json.dumps(line) + '\n' for line in lines))
    for name in checkpoints:
        (work_dir / name).write_bytes(b'')
    if pointer:
        (work_dir / 'last_checkpoint').write_text(str(work_dir / pointer))


def summarize(repo, work_dir, *options):
    return subprocess.run([sys.executable, SUMMARY, str(work_dir), DIGITS, '--image', 'digit.png', *options],
                          cwd=repo, capture_output=True, text=True)


def test_summary_reads_every_run_and_the_best_checkpoint(tmp_path, repo):
    # A run to epoch 60, resumed from epoch 50 (its epochs 60+ replace the first run's): best 93.1 first at 80.
    _fabricate_run(tmp_path, {'20240101_120000': [(10, 30.4), (50, 88.0), (60, 95.0)],
                              '20240101_130000': [(60, 91.1), (70, 92.0), (80, 93.1), (90, 93.1), (100, 92.8)]},
                   ['epoch_99.pth', 'epoch_100.pth', 'best_accuracy_top1_epoch_80.pth'], pointer='epoch_100.pth')
    run = summarize(repo, tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ['Best accuracy/top1: 93.10 % at epoch 80 (validated at epochs 10, 50, 60, 70, 80, 90, 100)',
                         f'Checkpoint: {tmp_path / "best_accuracy_top1_epoch_80.pth"}']
    assert shlex.split(lines[3]) == [shlex.split(lines[3])[0], 'tools/demo/image_demo.py', 'digit.png', DIGITS,
                                     str(tmp_path / 'best_accuracy_top1_epoch_80.pth'), '--out-file', 'result.png']


def test_summary_without_best_checkpoint_or_results(tmp_path, repo):
    _fabricate_run(tmp_path / 'no_best', {'20240101_120000': [(10, 50.0), (20, 60.0)]},
                   ['epoch_20.pth'], pointer='epoch_20.pth')
    lines = summarize(repo, tmp_path / 'no_best').stdout.splitlines()
    assert lines[:3] == ['Best accuracy/top1: 60.00 % at epoch 20 (validated at epochs 10, 20)',
                         f'Checkpoint: {tmp_path / "no_best" / "epoch_20.pth"}',
                         'Classify an image with it (prints the top 5, draws the prediction into result.png):']

    _fabricate_run(tmp_path / 'other_run', {'20240101_120000': [(10, 50.0), (20, 60.0)]},
                   ['best_accuracy_top1_epoch_30.pth'])
    lines = summarize(repo, tmp_path / 'other_run').stdout.splitlines()
    assert 'the checkpoint is from epoch 30' in lines[2]

    (tmp_path / 'empty').mkdir()
    run = summarize(repo, tmp_path / 'empty')
    assert run.returncode == 1
    assert f'{tmp_path / "empty"} has no validation result and no checkpoint' in run.stderr


def test_curves_of_a_resumed_run(tmp_path, repo):
    # The first run logged every 5 iterations up to epoch 5; it was resumed from epoch 2 (iteration 20), logging
    # every 10, and stopped after epoch 4: from epoch 3 (iteration 21) on only the resumed run counts, which
    # drops the first run's iterations 25, 35, 45, 50 and epoch 5 too.
    _fabricate_run(tmp_path, {'20240101_120000': [(1, 40.0), (2, 70.0), (3, 80.0), (4, 85.0), (5, 97.0)],
                              '20240101_130000': [(3, 82.0), (4, 88.0)]},
                   ['epoch_4.pth', 'best_accuracy_top1_epoch_4.pth'], pointer='epoch_4.pth',
                   losses={'20240101_120000': [(5, 2.3), (10, 2.2), (15, 2.0), (20, 1.9), (25, 1.7), (30, 1.6),
                                               (35, 1.5), (40, 1.4), (45, 1.3), (50, 1.2)],
                           '20240101_130000': [(30, 1.65), (40, 1.45)]})
    run = summarize(repo, tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == 'Best accuracy/top1: 88.00 % at epoch 4 (validated at epochs 1, 2, 3, 4)'
    assert lines[4:] == [f'Training curves: {tmp_path / "curves.png"}']
    assert_png(tmp_path / 'curves.png', CURVES_PIXELS)

    figure = runpy.run_path(str(repo / SUMMARY))['curves_figure'](str(tmp_path), DIGITS)
    loss_axes, top1_axes = figure.axes
    assert loss_axes.lines[0].get_xydata().tolist() == [[5, 2.3], [10, 2.2], [15, 2.0], [20, 1.9], [30, 1.65],
                                                        [40, 1.45]]
    assert top1_axes.lines[0].get_xydata().tolist() == [[1, 40.0], [2, 70.0], [3, 82.0], [4, 88.0]]
    assert top1_axes.lines[1].get_xydata().tolist() == [[4, 88.0]]  # the best, marked
    assert (loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ('iteration', 'training loss')
    assert (top1_axes.get_xlabel(), top1_axes.get_ylabel()) == ('epoch', 'validation accuracy/top1 (%)')
    assert 'dynamixer-tiny_2xb64_digits' in figure.get_suptitle()


def test_curves_option(tmp_path, repo):
    work_dir = tmp_path / 'work_dir'
    _fabricate_run(work_dir, {'20240101_120000': [(10, 50.0)]}, ['epoch_10.pth'], pointer='epoch_10.pth')
    chosen = tmp_path / 'plots' / 'new' / 'run.png'  # its folders are created
    run = summarize(repo, work_dir, '--out-file', str(chosen))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == f'Training curves: {chosen}'
    assert_png(chosen, CURVES_PIXELS)
    assert not (work_dir / 'curves.png').exists()

    # Refused before anything is read or printed.
    run = summarize(repo, work_dir, '--out-file', str(tmp_path / 'run.jpg'))
    assert run.returncode == 2 and not run.stdout
    assert f"--out-file '{tmp_path / 'run.jpg'}' must name a .png file" in run.stderr
    (tmp_path / 'folder.png').mkdir()
    run = summarize(repo, work_dir, '--out-file', str(tmp_path / 'folder.png'))
    assert run.returncode == 2 and f"--out-file '{tmp_path / 'folder.png'}' is a folder" in run.stderr
    (tmp_path / 'a_file').write_text('')
    run = summarize(repo, work_dir, '--out-file', str(tmp_path / 'a_file' / 'run.png'))
    assert run.returncode == 1 and f"cannot write --out-file '{tmp_path / 'a_file' / 'run.png'}'" in run.stderr


def test_tools_name_the_argument_that_cannot_be_used(tmp_path, repo, capsys):
    """mmdynamixer.cli.check_inputs, which the demos and the CAM tools run before loading anything."""
    checkpoint = tmp_path / 'ok.pth'
    torch.save({'state_dict': {}}, checkpoint)
    not_an_image = tmp_path / 'notes.png'
    not_an_image.write_text('a text file')
    config = str(repo / DIGITS)
    for kwargs, message in [
            (dict(image=str(tmp_path / 'gone.png'), config=config), f"IMAGE '{tmp_path / 'gone.png'}' is not a file"),
            (dict(config=str(tmp_path / 'c.py')), f"CONFIG '{tmp_path / 'c.py'}' is not a file"),
            (dict(config=config, checkpoint=str(not_an_image)), f'{not_an_image} ('),
            (dict(image=str(not_an_image), checkpoint=str(checkpoint)), f"IMAGE '{not_an_image}' is not an image mmcv"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            check_inputs(argparse.ArgumentParser(prog='tool'), **kwargs)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert check_inputs(argparse.ArgumentParser(prog='tool'), config=config, checkpoint=str(checkpoint)) is None
    image = tmp_path / 'red.png'
    Image.new('RGB', (5, 3), (200, 10, 0)).save(image)
    pixels = check_inputs(argparse.ArgumentParser(prog='tool'), image=str(image))  # the image it read, BGR
    assert pixels.shape == (3, 5, 3) and (pixels == [0, 10, 200]).all()


def test_curves_old_flag_warns_and_still_works(tmp_path, repo):
    work_dir = tmp_path / 'work_dir'
    _fabricate_run(work_dir, {'20240101_120000': [(10, 50.0)]}, ['epoch_10.pth'], pointer='epoch_10.pth')
    run = summarize(repo, work_dir, '--curves', str(tmp_path / 'old.png'))
    assert run.returncode == 0, run.stderr
    assert 'FutureWarning: --curves is deprecated and will be removed in the next release; use --out-file' in run.stderr
    assert run.stdout.splitlines()[-1] == f'Training curves: {tmp_path / "old.png"}'
    assert_png(tmp_path / 'old.png', CURVES_PIXELS)


HELPED = ['tools/demo/image_demo.py', 'tools/demo/summarize_run.py', 'tools/demo/prepare_digits.py',
          'tools/model_converters/dynamixer_resample.py', 'tools/model_converters/dynamixer_to_mmpretrain.py']


def run_in_process(repo, tool, args, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [tool.rsplit('/', 1)[-1], *map(str, args)])
    runpy.run_path(str(repo / tool), run_name='__main__')


@pytest.mark.parametrize('tool', HELPED)
def test_help(tool, repo, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(repo, tool, ['--help'], monkeypatch)
    assert exit_info.value.code == 0
    printed = ' '.join(capsys.readouterr().out.split())
    assert printed.startswith(f'usage: {tool.rsplit("/", 1)[-1]} [-h]')
    if tool == 'tools/demo/image_demo.py':
        assert '--device DEVICE device to run on, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)' \
            in printed


def test_train_digits_help_sets_nothing_up(repo, tmp_path):
    """--help answers before the script sets up .venv or writes data (run in a copy, so nothing else is there)."""
    script = tmp_path / 'tools' / 'demo' / 'train_digits.sh'
    script.parent.mkdir(parents=True)
    script.write_bytes((repo / 'tools/demo/train_digits.sh').read_bytes())
    run = subprocess.run(['bash', str(script), '--help'], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith('usage: bash tools/demo/train_digits.sh'), run.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*')) == [
        'tools', 'tools/demo', 'tools/demo/train_digits.sh']


def test_prepare_digits_sizes_and_the_old_flag(repo, tmp_path, monkeypatch, capsys):
    run_in_process(repo, 'tools/demo/prepare_digits.py', [tmp_path / 'wide', '--size', 30, 45], monkeypatch)
    train, val = (list((tmp_path / 'wide').glob(f'{split}/*/*.png')) for split in ('train', 'val'))
    assert len(train) + len(val) == 1797  # scikit-learn's digits, each once
    assert capsys.readouterr().out.splitlines()[-1] == \
        f'wrote {len(train)} training and {len(val)} held-out images under {tmp_path / "wide"}'
    assert {Image.open(p).size for p in train + val} == {(45, 30)}  # PIL's (width, height): --size is height first
    with pytest.warns(FutureWarning, match='--image-size is deprecated .* use --size'):
        run_in_process(repo, 'tools/demo/prepare_digits.py', [tmp_path / 'old', '--image-size', 20], monkeypatch)
    assert {Image.open(p).size for p in (tmp_path / 'old').glob('val/*/*.png')} == {(20, 20)}
    for args, message in [(['--size', 0], '--size takes HEIGHT WIDTH (or one SIDE for a square) as positive '
                                          'integers, got 0'),
                          (['--image-size', -4], '--image-size -4 is not a positive number of pixels'),
                          (['--val-fraction', 1.5], '--val-fraction must be in (0, 1), got 1.5')]:
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_info:
            warnings.simplefilter('ignore', FutureWarning)
            run_in_process(repo, 'tools/demo/prepare_digits.py', [tmp_path / 'bad', *args], monkeypatch)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'bad').exists()


def test_resample_the_trained_checkpoint_to_another_size(trained, repo, tmp_path, monkeypatch, capsys):
    """The fine-tuning step of docs/finetuning.md: the digits checkpoint (56 px: 8 then 4 tokens per side) resampled for
    84-pixel images, 12 then 6 tokens (84 / 7, then halved by the transition)."""
    _, checkpoint = trained
    tool = 'tools/model_converters/dynamixer_resample.py'
    run_in_process(repo, tool, [checkpoint, tmp_path / 'new.pth', '--size', 84], monkeypatch)
    assert capsys.readouterr().out.splitlines()[-1] == 'set the config\'s arch resolutions=[12, 6, 6, 6]'
    new = torch.load(tmp_path / 'new.pth', weights_only=True)
    assert new['meta']['resolutions'] == [12, 6, 6, 6] and new['meta']['resolution'] == 84
    generate = new['state_dict']['backbone.network.0.0.attn.mix_h.generate.weight']
    assert generate.shape == (12 * 12, 12 * 2)  # seq_len x seq_len out, seq_len x reduced_dim (2) in

    with pytest.warns(FutureWarning, match='--resolution is deprecated .* use --size'):
        run_in_process(repo, tool, [checkpoint, tmp_path / 'old.pth', '--resolution', 84], monkeypatch)
    old = torch.load(tmp_path / 'old.pth', weights_only=True)
    assert old['state_dict'].keys() == new['state_dict'].keys()
    assert all(torch.equal(old['state_dict'][k], v) for k, v in new['state_dict'].items())

    for args, message in [(['--size', 84, 112], '--size 84 112 is not square: a DynaMixer arch has one token count '
                                                'per stage for both axes (resolutions), so give one side'),
                          ([], '--size is required')]:
        with pytest.raises(SystemExit) as exit_info:
            run_in_process(repo, tool, [checkpoint, tmp_path / 'bad.pth', *args], monkeypatch)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'bad.pth').exists()
