"""The package as a wheel, installed outside the checkout into an environment that already has the stack: it carries
its configs, tools and model index in ``mmdynamixer/.mim`` as the OpenMMLab packages do, so that ``mim search``,
``mim train`` and mmpretrain's model hub find them, and a user's config inherits ours from it."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from mmdynamixer.testing import tool_env

MIM = 'from mim.cli import cli; cli()'  # the `mim` command, run by the environment's interpreter


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds (build isolation, as a user's `pip install .`), from a copy of the tracked files
    so that the build writes nothing into the checkout."""
    tmp = tmp_path_factory.mktemp('wheel')
    tracked = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (tmp / 'src' / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp / 'src' / name)
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', str(tmp / 'src'), '-w',
                            str(tmp / 'dist')], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    return next((tmp / 'dist').glob('mmdynamixer-*.whl'))


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory) -> Path:
    """An environment with the tested stack (this one's packages, through a .pth file) and the wheel installed into
    its own site-packages, which come first: its interpreter."""
    venv = tmp_path_factory.mktemp('env') / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    site = Path(subprocess.run([str(venv / 'bin/python'), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / 'stack.pth').write_text(sysconfig.get_path('purelib') + '\n')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return venv / 'bin/python'


def run(python: Path, *args, cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run([str(python), *args], cwd=cwd, env=tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return result.stdout


def test_wheel_carries_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ('mmdynamixer/.mim/model-index.yml', 'mmdynamixer/.mim/configs/dynamixer/metafile.yml',
                 'mmdynamixer/.mim/configs/dynamixer/dynamixer-s_8xb256_in1k.py',
                 'mmdynamixer/.mim/configs/_base_/dynamixer_runtime.py', 'mmdynamixer/.mim/tools/train.py',
                 'mmdynamixer/.mim/tools/dist_train.sh', 'mmdynamixer/.mim/tools/demo/prepare_digits.py'):
        assert name in names, name
    assert not [name for name in names if '__pycache__' in name or name.startswith('tests/')]


def test_model_hub_lists_and_builds_our_models(installed, tmp_path):
    script = ('import mmdynamixer, mmpretrain\n'
              'print(">>", mmdynamixer.__file__)\n'
              'print(">>", ",".join(mmpretrain.list_models("*dynamixer*")))\n'
              'model = mmpretrain.get_model("dynamixer-s_8xb256_in1k")\n'
              'print(">>", type(model.backbone).__module__, type(model.backbone).__name__, model.backbone.arch["layers"])\n')
    lines = [line[3:] for line in run(installed, '-c', script, cwd=tmp_path).splitlines() if line.startswith('>> ')]
    assert not lines[0].startswith(str(REPO)) and '.mim' not in lines[0]  # the installed package, not the checkout
    assert lines[1] == 'dynamixer-l_8xb64_in1k,dynamixer-m_8xb128_in1k,dynamixer-s_8xb256_in1k'
    assert lines[2] == 'mmdynamixer.integrations.mmpretrain DynaMixer [4, 3, 8, 3]'


def test_mim_search_lists_the_models(installed, tmp_path):
    out = run(installed, '-c', MIM, 'search', 'mmdynamixer', cwd=tmp_path)
    for name in ('dynamixer-s_8xb256_in1k', 'dynamixer-m_8xb128_in1k', 'dynamixer-l_8xb64_in1k'):
        assert f'config id: {name}' in out
    assert 'configs/dynamixer/dynamixer-s_8xb256_in1k.py' in out


def test_mim_train_finds_our_config_and_tool(installed, digits, tmp_path):
    (tmp_path / 'data').symlink_to(digits.parent)  # the config reads data/digits from the working directory
    out = run(installed, '-c', MIM, 'train', 'mmdynamixer', 'dynamixer-tiny_2xb64_digits.py', '--work-dir',
              str(tmp_path / 'work'), '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=128',
              'val_dataloader.dataset.indices=64', 'default_hooks.logger.interval=1', cwd=tmp_path)
    site = Path(run(installed, '-c', 'import mmdynamixer, os; print(os.path.dirname(mmdynamixer.__file__))',
                    cwd=tmp_path).strip())
    assert f'Training command is {installed} {site}/.mim/tools/train.py {site}/.mim/configs/dynamixer/' in out
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


def test_a_users_config_inherits_ours_from_the_installed_package(installed, tmp_path):
    user = tmp_path / 'my_config.py'
    user.write_text("_base_ = [__import__('mmdynamixer').config_file('dynamixer/dynamixer-s_8xb256_in1k.py')]\n"
                    "model = dict(head=dict(num_classes=5))\n")
    script = (f'from mmengine.config import Config\ncfg = Config.fromfile({str(user)!r})\n'
              'print(cfg.model.backbone.type, cfg.model.head.num_classes, cfg.train_cfg.max_epochs)\n')
    assert run(installed, '-c', script, cwd=tmp_path).strip().splitlines()[-1] == 'DynaMixer 5 310'


def test_config_file_names_what_exists():
    import mmdynamixer
    assert Path(mmdynamixer.config_file('dynamixer/dynamixer-s_8xb256_in1k.py')).is_file()
    with pytest.raises(FileNotFoundError, match=r"no config 'dynamixer/nope\.py'.*dynamixer-s_8xb256_in1k\.py"):
        mmdynamixer.config_file('dynamixer/nope.py')
