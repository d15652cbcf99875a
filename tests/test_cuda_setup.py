"""tools/cuda_setup.py: which mmcv build set-up makes (CPU, or CUDA ops with which toolkit and archs), without a GPU."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location('cuda_setup', REPO / 'tools/cuda_setup.py')
cuda_setup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cuda_setup)

VENV_HOME = '/venv/lib/python3.11/site-packages/nvidia/cu13'


def facts(gpu_caps=(), env=None, nvcc=None, torch_cuda='13.0', toolkit_pin='13.0.3'):
    return cuda_setup.HostFacts(
        torch_version='2.14.1+cu130' if torch_cuda else '2.14.1+cpu', torch_cuda=torch_cuda,
        gpu_caps=None if gpu_caps is None else list(gpu_caps), env=env or {},
        nvcc={'/usr/local/cuda': None, VENV_HOME: None} if nvcc is None else nvcc,
        venv_cuda_home=VENV_HOME if torch_cuda else None, toolkit_pin=toolkit_pin)


def test_no_gpu_and_no_request_builds_cpu_ops():
    plan = cuda_setup.decide(facts(env={'TORCH_CUDA_ARCH_LIST': '9.0'}))
    assert (plan.device_tag, plan.cuda, plan.toolkit, plan.arch_list) == ('cpu', False, None, None)


def test_gpu_without_nvcc_installs_the_toolkit_torch_pins_for_the_gpus_archs():
    plan = cuda_setup.decide(facts(gpu_caps=['9.0', '9.0', '8.0']))
    assert plan.toolkit == 'cuda-toolkit[nvcc,cccl]==13.0.3'
    assert plan.cuda_home == VENV_HOME
    assert plan.arch_list == '8.0;9.0'
    assert plan.device_tag == 'cuda13.0-sm80_sm90'


def test_request_without_gpu_uses_the_default_archs():
    plan = cuda_setup.decide(facts(env={'MMDYNAMIXER_CUDA_OPS': '1'}))
    assert plan.arch_list == '8.0;9.0;10.0'
    assert plan.device_tag == 'cuda13.0-sm80_sm90_sm100'
    assert plan.toolkit == 'cuda-toolkit[nvcc,cccl]==13.0.3'


def test_user_arch_list_wins_and_is_normalised_for_the_cache_name():
    plan = cuda_setup.decide(facts(gpu_caps=['8.0'], env={'TORCH_CUDA_ARCH_LIST': '10.0a 9.0+PTX;9.0+PTX'}))
    assert plan.arch_list == '9.0+PTX;10.0a'
    assert plan.device_tag == 'cuda13.0-sm90+ptx_sm100a'


def test_cpu_ops_on_request_even_with_a_gpu():
    assert cuda_setup.decide(facts(gpu_caps=['9.0'], env={'MMDYNAMIXER_CUDA_OPS': '0'})).device_tag == 'cpu'


def test_matching_system_nvcc_is_used_and_nothing_installed():
    nvcc = {'/usr/bin/..': '12.4', '/usr/local/cuda': '13.1', VENV_HOME: None}
    plan = cuda_setup.decide(facts(gpu_caps=['9.0'], nvcc=nvcc))
    assert (plan.cuda_home, plan.toolkit, plan.device_tag) == ('/usr/local/cuda', None, 'cuda13.1-sm90')


def test_nvcc_of_another_major_on_path_is_passed_over_for_the_registry_toolkit():
    plan = cuda_setup.decide(facts(gpu_caps=['9.0'], nvcc={'/usr': '12.8', '/usr/local/cuda': None, VENV_HOME: None}))
    assert plan.toolkit == 'cuda-toolkit[nvcc,cccl]==13.0.3'
    assert '12.8 at /usr' in plan.reason


def test_toolkit_installed_by_an_earlier_run_is_reused():
    plan = cuda_setup.decide(facts(gpu_caps=['9.0'], nvcc={'/usr/local/cuda': None, VENV_HOME: '13.0'}))
    assert (plan.cuda_home, plan.toolkit) == (VENV_HOME, None)


def test_without_a_pin_the_toolkit_follows_torchs_cuda_minor():
    plan = cuda_setup.decide(facts(gpu_caps=['9.0'], toolkit_pin=None))
    assert plan.toolkit == 'cuda-toolkit[nvcc,cccl]==13.0.*'


@pytest.mark.parametrize('case, message', [
    (dict(gpu_caps=['9.0'], env={'CUDA_HOME': '/opt/cuda-12.4'}, nvcc={'/opt/cuda-12.4': '12.4'}),
     'CUDA_HOME=/opt/cuda-12.4 has nvcc 12.4; torch 2.14.1+cu130 needs nvcc of CUDA 13'),
    (dict(gpu_caps=['9.0'], env={'CUDA_HOME': '/nowhere'}, nvcc={'/nowhere': None}), 'CUDA_HOME=/nowhere has no nvcc'),
    (dict(gpu_caps=['7.0']), 'arch 7.0 (sm_70) cannot be built by CUDA 13'),
    (dict(env={'MMDYNAMIXER_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': '7.0;8.0'}),
     "TORCH_CUDA_ARCH_LIST='7.0;8.0': arch 7.0 (sm_70) cannot be built by CUDA 13"),
    (dict(env={'MMDYNAMIXER_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': 'Hopper'}), "arch 'Hopper' is not a compute"),
    (dict(env={'MMDYNAMIXER_CUDA_OPS': 'yes'}), "MMDYNAMIXER_CUDA_OPS='yes'; allowed: 1"),
    (dict(gpu_caps=['9.0'], torch_cuda=None), 'torch 2.14.1+cpu is a CPU-only build'),
    (dict(gpu_caps=None), 'does not report its compute capability'),
    (dict(gpu_caps=['9.0'], env={'MMCV_CUDA_ARGS': '-gencode=arch=compute_90,code=sm_90'}),
     'makes torch ignore TORCH_CUDA_ARCH_LIST'),
    (dict(gpu_caps=['8.0'], torch_cuda='12.8', nvcc={'/usr/local/cuda': '11.8'}),
     "needs nvcc of CUDA 12 (found: 11.8 at /usr/local/cuda); the registry's CUDA 12 wheels do not form a CUDA_HOME"),
])
def test_refusals_name_the_value_and_the_way_out(case, message):
    with pytest.raises(ValueError) as error:
        cuda_setup.decide(facts(**case))
    assert message in str(error.value)


def test_link_cudart_links_the_versioned_runtime_once(tmp_path):
    lib = tmp_path / 'lib'
    lib.mkdir()
    (lib / 'libcudart.so.13').write_bytes(b'')
    link = cuda_setup.link_cudart(tmp_path)
    assert link == lib / 'libcudart.so' and os.readlink(link) == 'libcudart.so.13'
    assert cuda_setup.link_cudart(tmp_path) is None
    with pytest.raises(FileNotFoundError, match='has no libcudart.so'):
        cuda_setup.link_cudart(tmp_path / 'empty')


def _fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text(f'#!/bin/sh\n{script}\n')
    tool.chmod(0o755)


def test_a_home_counts_only_with_nvcc_and_the_cuda_headers(tmp_path):
    """A wrapper script such as /usr/local/bin/nvcc makes /usr/local look like a CUDA_HOME; it is none."""
    (tmp_path / 'bin').mkdir()
    _fake_tool(tmp_path / 'bin', 'nvcc', 'echo "Cuda compilation tools, release 12.8, V12.8.93"')
    assert cuda_setup.toolkit_version(tmp_path) is None
    (tmp_path / 'include').mkdir()
    (tmp_path / 'include/cuda_runtime.h').write_text('')
    assert cuda_setup.toolkit_version(tmp_path) == '12.8'
    assert cuda_setup.toolkit_version(tmp_path / 'nowhere') is None


def test_plan_cli_reads_nvidia_smi_and_nvcc_from_the_host(tmp_path):
    """The shell assignments setup_env.sh evals, from a fake driver (two H100s) and a CUDA_HOME with nvcc 13.0."""
    bin_dir, home = tmp_path / 'bin', tmp_path / 'cuda'
    bin_dir.mkdir()
    (home / 'bin').mkdir(parents=True)
    (home / 'include').mkdir()
    (home / 'include/cuda_runtime.h').write_text('')
    # nvidia-smi -L and the compute_cap query print different things: dispatch on the arguments.
    _fake_tool(bin_dir, 'nvidia-smi', 'if [ "$1" = -L ]; then echo "GPU 0: NVIDIA H100 (UUID: x)"; '
                                      'echo "GPU 1: NVIDIA H100 (UUID: y)"; else printf "9.0\\n9.0\\n"; fi')
    _fake_tool(home / 'bin', 'nvcc', 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', CUDA_HOME=str(home))
    env.pop('TORCH_CUDA_ARCH_LIST', None)
    env.pop('MMDYNAMIXER_CUDA_OPS', None)
    script = f'eval "$("{sys.executable}" tools/cuda_setup.py plan)" && echo "$device_tag|$cuda_home|$cuda_toolkit"'
    out = subprocess.run(['bash', '-c', script], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f'cuda13.0-sm90|{home}|'


def test_a_refused_plan_stops_set_up_before_anything_is_built(tmp_path):
    """setup_env.sh assigns the plan under ``set -e``: a refusal ends the script with the reason."""
    env = dict(os.environ, MMDYNAMIXER_CUDA_OPS='yes')
    script = f'set -e; cuda_plan="$("{sys.executable}" tools/cuda_setup.py plan)"; echo built'
    out = subprocess.run(['bash', '-c', script], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and 'built' not in out.stdout
    assert "cuda_setup: MMDYNAMIXER_CUDA_OPS='yes'; allowed: 1" in out.stderr
