"""tools/setup_env.sh and tools/cuda_setup.py run for real on a faked host: which mmcv build set-up makes (CPU ops,
or CUDA ops with which toolkit and archs), with which flags, when it reuses the cached wheel, and what it refuses.

The host is faked at its boundary, under tmp_path: ``nvidia-smi`` and the system CUDA home, CUDA toolkits (an
``nvcc`` script beside ``include/cuda_runtime.h``), the environment, and a ``python3`` whose venvs are real but send
``-m pip`` to a fake pip. That pip logs each call with the build environment and leaves behind what the real one
would: a downloaded mmcv sdist, a built wheel (with ops only when they would be compiled), installed packages (a
fake torch whose version, CUDA and toolkit pin each test chooses, the registry's toolkit tree, stubs of the
toolboxes). The real .venv and ~/.cache are never touched.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

MMCV = re.search(r'^mmcv==(\S+)$', (REPO / 'requirements/constraints.txt').read_text(), re.M).group(1)
PY_TAG = f'cp{sys.version_info.major}{sys.version_info.minor}'
SITE = Path('lib', f'python{sys.version_info.major}.{sys.version_info.minor}', 'site-packages')

FAKE_PIP = r'''
"""pip as setup_env.sh calls it: logs the call to $FAKE_LOG and leaves behind what the real command would."""
import json, os, re, shutil, sys, sysconfig, tarfile, zipfile
from pathlib import Path

args = sys.argv[1:]
positional, options = [], {}
pending = None
for arg in args:
    if pending:
        options[pending], pending = arg, None
    elif arg in ('-c', '-d', '-w', '--no-binary'):
        pending = arg
    elif not arg.startswith('-'):
        positional.append(arg)
command, targets = positional[0], positional[1:]
site = Path(sysconfig.get_paths()['purelib'])
record = dict(command=command, args=args, path0=os.environ['PATH'].split(':')[0],
              env={name: os.environ.get(name) for name in
                   ('MMCV_WITH_OPS', 'MAX_JOBS', 'FORCE_CUDA', 'CUDA_HOME', 'TORCH_CUDA_ARCH_LIST')})
if command == 'download':  # mmcv's sdist, whose setup.py hard-codes C++17 as mmcv 2.1.0's does
    name = targets[0].replace('==', '-')
    source = Path(options['-d'], 'unpacked', name)
    source.mkdir(parents=True)
    (source / 'setup.py').write_text("extra_compile_args = {'cxx': ['-std=c++17'], 'nvcc': ['-std=c++17']}\n")
    with tarfile.open(Path(options['-d'], name + '.tar.gz'), 'w:gz') as sdist:
        sdist.add(source, arcname=name)
elif command == 'wheel':  # the ops are compiled only when asked for and the build can see torch
    source = Path(targets[0])
    record['setup_py'] = (source / 'setup.py').read_text()
    Path(options['-w']).mkdir(parents=True)
    name, version = source.name.split('-')
    with zipfile.ZipFile(Path(options['-w'], f'{source.name}-{os.environ["PY_TAG"]}-linux_x86_64.whl'), 'w') as wheel:
        wheel.writestr('mmcv/__init__.py', f'__version__ = {version!r}\n')
        if os.environ.get('MMCV_WITH_OPS') == '1' and '--no-build-isolation' in args:
            wheel.writestr('mmcv/ops.py', 'def nms(boxes, scores, iou_threshold):\n    return boxes\n')
elif command == 'install':
    for target in targets:
        if target.endswith('.whl'):
            zipfile.ZipFile(target).extractall(site)
            continue
        project = Path(re.sub(r'\[.*\]$', '', target)).is_dir()
        package = Path(os.environ['FAKE_PACKAGES'], 'project' if project else re.split(r'[\[=<>;]', target)[0])
        if package.is_dir():
            shutil.copytree(package, site, dirs_exist_ok=True)
with open(os.environ['FAKE_LOG'], 'a') as log:
    log.write(json.dumps(record) + '\n')
'''


def executable(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n{script}\n')
    path.chmod(0o755)


def cuda_toolkit(home: Path, release: str) -> Path:
    """A CUDA home as cuda_setup.py recognises one: ``bin/nvcc`` reporting ``release``, the runtime header, and the
    versioned runtime library only, as the registry's wheels ship it."""
    executable(home / 'bin/nvcc', f'echo "Cuda compilation tools, release {release}, V{release}.88"')
    (home / 'include').mkdir()
    (home / 'include/cuda_runtime.h').write_text('')
    (home / 'lib').mkdir()
    (home / 'lib' / f'libcudart.so.{release.split(".")[0]}').write_text('')
    return home


class FakeHost:
    """A machine under ``root`` with no GPU, no system CUDA and pip installing torch 2.14.1+cu130 (pinning
    cuda-toolkit 13.0.3); :meth:`gpus` and :meth:`torch` change it."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / 'bin'
        self.packages = root / 'packages'
        self.log = root / 'pip.log'
        self.venv = root / 'venv'
        self.cache = root / 'cache'
        (root / 'tmp').mkdir()
        (root / 'home').mkdir()
        (root / 'fake_pip.py').write_text(FAKE_PIP)
        # python3: real venvs (without pip) whose python runs "-m pip" as the fake pip.
        wrapper = f'''#!/bin/sh
if [ "$1" = -m ] && [ "$2" = pip ]; then shift 2; exec "$(dirname "$0")/python3" {root / "fake_pip.py"} "$@"; fi
exec "$(dirname "$0")/python3" "$@"'''
        executable(self.bin / 'python3', f'''if [ "$1" = -m ] && [ "$2" = venv ]; then
  {sys.executable} -m venv --without-pip "$3" || exit
  rm -f "$3/bin/python"
  cat > "$3/bin/python" <<'EOF'
{wrapper}
EOF
  chmod +x "$3/bin/python"
  exit 0
fi
exec {sys.executable} "$@"''')
        self.gpus()
        self.disk_free(64 * 1024 ** 3)
        self.torch('2.14.1+cu130', cuda='13.0', toolkit_pin='13.0.3')
        cuda_toolkit(self.packages / 'cuda-toolkit/nvidia/cu13', '13.0')
        for module in ('mmpretrain/models', 'mmdet/models', 'mmseg/models', 'timm/__init__', 'mmdynamixer/__init__'):
            path = self.packages / 'project' / f'{module}.py'
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('')
            (path.parent / '__init__.py').write_text('')

    def gpus(self, *caps: str, caps_readable: bool = True) -> None:
        """``nvidia-smi`` listing one GPU per compute capability (none: "No devices were found", as with a driver
        but no GPU); ``caps_readable=False``: a driver too old to report compute capabilities."""
        listing = ''.join(f'echo "GPU {i}: NVIDIA GPU (UUID: GPU-{i})"; ' for i in range(len(caps)))
        listing = listing or 'echo "No devices were found"; exit 6; '
        query = ('printf "' + ''.join(f'{cap}\\n' for cap in caps) + '"' if caps_readable
                 else 'echo "Field \\"compute_cap\\" is not a valid field to query."; exit 2')
        executable(self.bin / 'nvidia-smi', f'if [ "$1" = -L ]; then {listing}else {query}; fi')

    def disk_free(self, nbytes: int) -> None:
        """``df -Pk`` reporting ``nbytes`` available on every file system."""
        executable(self.bin / 'df', 'echo "Filesystem 1024-blocks Used Available Capacity Mounted on"; '
                                    f'echo "/dev/vda 263174212 89127648 {nbytes // 1024} 84% /"')

    def torch(self, version: str, cuda, toolkit_pin) -> None:
        """The torch pip installs: ``torch.__version__``, ``torch.version.cuda`` and the cuda-toolkit its
        metadata requires (None: none)."""
        tree = self.packages / 'torch'
        shutil.rmtree(tree, ignore_errors=True)
        (tree / 'torch').mkdir(parents=True)
        (tree / 'torch/__init__.py').write_text(
            f'__version__ = {version!r}\n\n\nclass version:\n    cuda = {cuda!r}\n\n\n'
            f'class cuda:\n    is_available = staticmethod(lambda: False)\n\n\ndef tensor(data):\n    return data\n')
        requires = (f'Requires-Dist: cuda-toolkit[cublas,cudart]=={toolkit_pin}; platform_system == "Linux"\n'
                    if toolkit_pin else '')
        dist = tree / f'torch-{version.split("+")[0]}.dist-info'
        dist.mkdir()
        (dist / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: torch\nVersion: {version}\n{requires}')

    def env(self, **settings: str) -> dict:
        env = dict(PATH=f'{self.bin}:/usr/bin:/bin', HOME=str(self.root / 'home'), TMPDIR=str(self.root / 'tmp'),
                   LANG='C.UTF-8', PYTHON=str(self.bin / 'python3'), PY_TAG=f'{PY_TAG}-{PY_TAG}',
                   MMDYNAMIXER_VENV=str(self.venv), MMDYNAMIXER_CACHE=str(self.cache),
                   MMDYNAMIXER_SYSTEM_CUDA_HOME=str(self.root / 'no-system-cuda'),
                   FAKE_LOG=str(self.log), FAKE_PACKAGES=str(self.packages))
        env.update(settings)
        return env

    def setup(self, **settings: str) -> subprocess.CompletedProcess:
        """``bash tools/setup_env.sh`` on this host."""
        return subprocess.run(['bash', str(REPO / 'tools/setup_env.sh')], env=self.env(**settings), cwd=self.root,
                              capture_output=True, text=True, timeout=120)

    def cuda_setup(self, *args: str, **settings: str) -> subprocess.CompletedProcess:
        """``python tools/cuda_setup.py ARGS`` in a fresh venv of this host with its torch importable."""
        venv = self.root / 'plan-venv'
        if not venv.exists():
            subprocess.run([str(self.bin / 'python3'), '-m', 'venv', str(venv)], check=True)
        return subprocess.run([str(venv / 'bin/python'), str(REPO / 'tools/cuda_setup.py'), *args],
                              env=self.env(PYTHONPATH=str(self.packages / 'torch'), **settings), cwd=self.root,
                              capture_output=True, text=True, timeout=60)

    def plan(self, **settings: str) -> dict:
        out = self.cuda_setup('plan', **settings)
        assert out.returncode == 0, out.stderr
        return dict(shlex.split(line)[0].split('=', 1) for line in out.stdout.splitlines())

    def pip_calls(self) -> list:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def only(calls, command):
    (call,) = [call for call in calls if call['command'] == command]
    return call


def installed(calls):
    return [target for call in calls if call['command'] == 'install' for target in call['args']]


def test_no_gpu_builds_cpu_ops_once_then_reuses_the_venv_and_the_cached_wheel(host):
    out = host.setup()
    assert out.returncode == 0, out.stderr
    assert 'mmcv ops: no GPU visible and MMDYNAMIXER_CUDA_OPS unset: CPU-only ops' in out.stdout
    calls = host.pip_calls()
    assert not [target for target in installed(calls) if target.startswith('cuda-toolkit')]
    build = only(calls, 'wheel')
    assert build['env']['MMCV_WITH_OPS'] == '1' and build['env']['FORCE_CUDA'] is None
    assert build['env']['CUDA_HOME'] is None and build['env']['TORCH_CUDA_ARCH_LIST'] is None
    assert '--no-build-isolation' in build['args']
    assert '-std=c++20' in build['setup_py'] and 'c++17' not in build['setup_py']
    assert f'mmcv=={MMCV}' in only(calls, 'download')['args']
    wheel = host.cache / 'wheels' / f'mmcv-{MMCV}-{PY_TAG}-torch2.14.1+cu130-cpu' / \
        f'mmcv-{MMCV}-{PY_TAG}-{PY_TAG}-linux_x86_64.whl'
    assert wheel.is_file()
    assert [call['args'] for call in calls if str(wheel) in call['args']] == [
        ['--disable-pip-version-check', 'install', '-q', '-c', str(REPO / 'requirements/constraints.txt'), '--no-deps',
         '--force-reinstall', str(wheel)]]
    assert f'stack ok: torch 2.14.1+cu130 mmcv {MMCV}' in out.stdout
    assert (host.venv / '.mmdynamixer-env').is_file()

    again = host.setup()
    assert again.returncode == 0 and again.stdout == '' and host.pip_calls() == calls

    host.log.unlink()
    fresh = host.setup(MMDYNAMIXER_VENV=str(host.root / 'venv2'))
    assert fresh.returncode == 0, fresh.stderr
    commands = [call['command'] for call in host.pip_calls()]
    assert 'download' not in commands and 'wheel' not in commands
    assert str(wheel) in installed(host.pip_calls())


def test_gpu_without_nvcc_installs_the_pinned_toolkit_and_builds_for_the_gpus_archs(host):
    host.gpus('9.0', '9.0')
    out = host.setup()
    assert out.returncode == 0, out.stderr
    calls = host.pip_calls()
    cuda_home = host.venv / SITE / 'nvidia/cu13'
    toolkit = [i for i, call in enumerate(calls) if 'cuda-toolkit[nvcc,cccl]==13.0.3' in call['args']]
    build = only(calls, 'wheel')
    assert toolkit and toolkit[0] < calls.index(build)
    assert build['env'] == dict(MMCV_WITH_OPS='1', MAX_JOBS=build['env']['MAX_JOBS'], FORCE_CUDA='1',
                                CUDA_HOME=str(cuda_home), TORCH_CUDA_ARCH_LIST='9.0')
    assert build['path0'] == str(cuda_home / 'bin')
    assert os.readlink(cuda_home / 'lib/libcudart.so') == 'libcudart.so.13'
    assert (host.cache / 'wheels' / f'mmcv-{MMCV}-{PY_TAG}-torch2.14.1+cu130-cuda13.0-sm90').is_dir()


def test_floor_stack_pins_its_torch_in_place_of_the_default_and_keeps_mmcvs_cxx17(host):
    """MMDYNAMIXER_STACK=floor: every pip call gets constraints.txt with requirements/stack-floor.txt's pins in place
    of its torch and torchvision, and mmcv is built with its own C++17 (torch 2.1's headers) and cached apart."""
    host.torch('2.1.2+cu121', cuda='12.1', toolkit_pin=None)
    out = host.setup(MMDYNAMIXER_STACK='floor')
    assert out.returncode == 0, out.stderr
    assert 'refreshing' in out.stdout and '(floor stack)' in out.stdout
    merged = host.venv / 'constraints.txt'
    pins = [line for line in merged.read_text().splitlines() if '==' in line and not line.startswith('#')]
    assert [pin for pin in pins if pin.startswith('torch')] == ['torch==2.1.2', 'torchvision==0.16.2']
    default = [line for line in (REPO / 'requirements/constraints.txt').read_text().splitlines()
               if '==' in line and not line.startswith(('#', 'torch'))]
    assert default and sorted(pin for pin in pins if not pin.startswith('torch')) == sorted(default)
    calls = host.pip_calls()
    assert {call['args'][call['args'].index('-c') + 1] for call in calls if call['command'] == 'install'} == {
        str(merged)}
    build = only(calls, 'wheel')
    assert '-std=c++17' in build['setup_py'] and 'c++20' not in build['setup_py']
    assert (host.cache / 'wheels' / f'mmcv-{MMCV}-{PY_TAG}-torch2.1.2+cu121-cpu').is_dir()
    assert f'stack ok: torch 2.1.2+cu121 mmcv {MMCV}' in out.stdout

    again = host.setup(MMDYNAMIXER_STACK='floor')
    assert again.returncode == 0 and again.stdout == ''
    back = host.setup()  # the same venv asked for the default stack is rebuilt with the default pins
    assert back.returncode == 0 and 'refreshing' in back.stdout and '(default stack)' in back.stdout


def test_an_unknown_stack_is_refused_naming_the_stacks(host):
    out = host.setup(MMDYNAMIXER_STACK='newest')
    assert out.returncode == 2
    assert out.stderr.strip() == ('MMDYNAMIXER_STACK=newest: no requirements/stack-newest.txt; the stacks are '
                                  'default, ceiling, floor')
    assert host.pip_calls() == [] and not host.venv.exists()


def test_a_disk_too_full_for_a_new_venv_is_refused_before_pip_runs(host):
    """The CI run that died of "No space left on device" in the ceiling stack's pip install: with 5 GiB free, a
    new venv is refused at once, naming the space and the way out; an existing venv is refreshed whatever the disk."""
    host.disk_free(5 * 1024 ** 3)
    out = host.setup(MMDYNAMIXER_STACK='ceiling')
    assert out.returncode == 3
    assert f'setup_env: {host.root} has 5 GiB free; a new ceiling-stack venv takes about 6.5 GB' in out.stderr
    assert 'MMDYNAMIXER_STACKS=default bash tools/run_tests.sh' in out.stderr
    assert host.pip_calls() == [] and not host.venv.exists()
    assert host.setup(MMDYNAMIXER_STACK='ceiling', MMDYNAMIXER_MIN_FREE_GIB='4').returncode == 0

    host.torch('2.1.2+cu121', cuda='12.1', toolkit_pin=None)
    refreshed = host.setup(MMDYNAMIXER_STACK='floor')
    assert refreshed.returncode == 0 and '(floor stack)' in refreshed.stdout, refreshed.stderr


def test_gpu_less_build_host_uses_the_users_toolkit_and_archs(host):
    home = cuda_toolkit(host.root / 'cuda-13.1', '13.1')
    out = host.setup(MMDYNAMIXER_CUDA_OPS='1', CUDA_HOME=str(home), TORCH_CUDA_ARCH_LIST='10.0 9.0+PTX;9.0+PTX')
    assert out.returncode == 0, out.stderr
    calls = host.pip_calls()
    assert not [target for target in installed(calls) if target.startswith('cuda-toolkit')]
    build = only(calls, 'wheel')
    assert (build['env']['FORCE_CUDA'], build['env']['CUDA_HOME']) == ('1', str(home))
    assert build['env']['TORCH_CUDA_ARCH_LIST'] == '9.0+PTX;10.0'
    assert (host.cache / 'wheels' / f'mmcv-{MMCV}-{PY_TAG}-torch2.14.1+cu130-cuda13.1-sm90+ptx_sm100').is_dir()


def test_a_cached_wheel_without_ops_fails_set_up(host):
    """The last check imports mmcv.ops: a wheel built without them (an isolated build) stops set-up there."""
    wheels = host.cache / 'wheels' / f'mmcv-{MMCV}-{PY_TAG}-torch2.14.1+cu130-cpu'
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / f'mmcv-{MMCV}-{PY_TAG}-{PY_TAG}-linux_x86_64.whl', 'w') as wheel:
        wheel.writestr('mmcv/__init__.py', f'__version__ = {MMCV!r}\n')
    out = host.setup()
    assert out.returncode != 0
    assert "No module named 'mmcv.ops'" in out.stderr
    assert 'wheel' not in [call['command'] for call in host.pip_calls()]
    assert not (host.venv / '.mmdynamixer-env').exists()


@pytest.mark.parametrize('gpus, torch, settings, message', [
    (['9.0'], ('2.14.1+cpu', None, None), {}, 'cuda_setup: a GPU is visible, but torch 2.14.1+cpu is a CPU-only build'),
    (['7.0'], None, {}, 'arch 7.0 (sm_70) cannot be built by CUDA 13'),
    (['9.0'], None, {'CUDA_HOME': '{root}/cuda-12.4'},
     'CUDA_HOME={root}/cuda-12.4 has nvcc 12.4; torch 2.14.1+cu130 needs nvcc of CUDA 13'),
    ([], None, {'MMDYNAMIXER_CUDA_OPS': 'yes'}, "cuda_setup: MMDYNAMIXER_CUDA_OPS='yes'; allowed: 1"),
])
def test_a_refused_plan_stops_set_up_before_mmcv_is_fetched(host, gpus, torch, settings, message):
    host.gpus(*gpus)
    if torch:
        host.torch(*torch)
    cuda_toolkit(host.root / 'cuda-12.4', '12.4')
    out = host.setup(**{name: value.format(root=host.root) for name, value in settings.items()})
    assert out.returncode == 1
    assert message.format(root=host.root) in out.stderr
    assert {call['command'] for call in host.pip_calls()} == {'install'}
    assert not host.cache.exists() and not (host.venv / '.mmdynamixer-env').exists()


def test_plan_takes_the_first_toolkit_of_torchs_major_on_path_then_the_system_one(host):
    host.gpus('8.0')
    system = cuda_toolkit(host.root / 'system-cuda', '13.1')
    on_path = cuda_toolkit(host.root / 'path-cuda', '12.8')
    path = f'{on_path / "bin"}:{host.bin}:/usr/bin:/bin'
    plan = host.plan(PATH=path, MMDYNAMIXER_SYSTEM_CUDA_HOME=str(system))
    assert (plan['cuda_home'], plan['cuda_toolkit'], plan['device_tag']) == (str(system), '', 'cuda13.1-sm80')
    assert '12.8' not in plan['cuda_reason'] and f'nvcc 13.1 from {system}' in plan['cuda_reason']
    on_path_13 = cuda_toolkit(host.root / 'path-cuda-13', '13.0')
    plan = host.plan(PATH=f'{on_path_13 / "bin"}:{path}', MMDYNAMIXER_SYSTEM_CUDA_HOME=str(system))
    assert plan['cuda_home'] == str(on_path_13)


def test_plan_passes_over_a_wrapper_nvcc_and_other_majors_for_the_registry_toolkit(host):
    """An nvcc script with no CUDA headers beside it (/usr/local/bin/nvcc, say) is no CUDA_HOME."""
    host.gpus('9.0')
    executable(host.bin / 'nvcc', 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    system = cuda_toolkit(host.root / 'system-cuda', '12.8')
    plan = host.plan(MMDYNAMIXER_SYSTEM_CUDA_HOME=str(system))
    assert plan['cuda_toolkit'] == 'cuda-toolkit[nvcc,cccl]==13.0.3'
    assert plan['cuda_home'] == str(host.root / 'plan-venv' / SITE / 'nvidia/cu13')
    assert f'other nvcc: 12.8 at {system}' in plan['cuda_reason']
    cuda_toolkit(host.root / 'plan-venv' / SITE / 'nvidia/cu13', '13.0')  # installed by an earlier set-up
    plan = host.plan(MMDYNAMIXER_SYSTEM_CUDA_HOME=str(system))
    assert (plan['cuda_toolkit'], plan['device_tag']) == ('', 'cuda13.0-sm90')


def test_plan_without_a_pin_follows_torchs_cuda_and_cpu_ops_on_request(host):
    host.gpus('9.0')
    host.torch('2.14.1+cu130', cuda='13.0', toolkit_pin=None)
    assert host.plan()['cuda_toolkit'] == 'cuda-toolkit[nvcc,cccl]==13.0.*'
    assert host.plan(MMDYNAMIXER_CUDA_OPS='0')['device_tag'] == 'cpu'
    host.gpus()
    assert host.plan(TORCH_CUDA_ARCH_LIST='9.0') == dict(
        device_tag='cpu', cuda_home='', cuda_arch_list='', cuda_toolkit='',
        cuda_reason='no GPU visible and MMDYNAMIXER_CUDA_OPS unset: CPU-only ops')


@pytest.mark.parametrize('gpus, readable, torch, settings, message', [
    (['9.0'], True, None, {'CUDA_HOME': '{root}/nowhere'}, 'CUDA_HOME={root}/nowhere has no nvcc'),
    ([], True, None, {'MMDYNAMIXER_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': '7.0;8.0'},
     "TORCH_CUDA_ARCH_LIST='7.0;8.0': arch 7.0 (sm_70) cannot be built by CUDA 13"),
    ([], True, None, {'MMDYNAMIXER_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': 'Hopper'}, "arch 'Hopper' is not a compute"),
    (['9.0'], False, None, {}, 'does not report its compute capability'),
    (['9.0'], True, None, {'MMCV_CUDA_ARGS': '-gencode=arch=compute_90,code=sm_90'},
     'makes torch ignore TORCH_CUDA_ARCH_LIST'),
    (['8.0'], True, ('2.9.0+cu128', '12.8', None), {},
     "needs nvcc of CUDA 12 (found: 13.0 at {root}/system-cuda); the registry's CUDA 12 wheels do not form a "
     "CUDA_HOME"),
])
def test_plan_refusals_name_the_value_and_the_way_out(host, gpus, readable, torch, settings, message):
    host.gpus(*gpus, caps_readable=readable)
    if torch:
        host.torch(*torch)
    system = cuda_toolkit(host.root / 'system-cuda', '13.0')
    out = host.cuda_setup('plan', MMDYNAMIXER_SYSTEM_CUDA_HOME=str(system),
                          **{name: value.format(root=host.root) for name, value in settings.items()})
    assert out.returncode == 1 and out.stdout == ''
    assert 'cuda_setup: ' in out.stderr and message.format(root=host.root) in out.stderr


def test_link_cudart_links_the_versioned_runtime_once(host):
    home = cuda_toolkit(host.root / 'cuda', '13.0')
    first = host.cuda_setup('link-cudart', str(home))
    assert first.returncode == 0, first.stderr
    assert os.readlink(home / 'lib/libcudart.so') == 'libcudart.so.13'
    second = host.cuda_setup('link-cudart', str(home))
    assert second.returncode == 0 and 'libcudart.so present' in second.stderr
    missing = host.cuda_setup('link-cudart', str(host.root / 'empty'))
    assert missing.returncode == 1 and 'has no libcudart.so' in missing.stderr
