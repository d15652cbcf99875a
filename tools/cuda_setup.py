"""How tools/setup_env.sh builds mmcv's ops: CPU only, or with CUDA ops, and with which toolkit and archs.

    python tools/cuda_setup.py plan               # shell assignments for setup_env.sh (a refusal exits 1)
    python tools/cuda_setup.py link-cudart HOME   # add HOME/lib/libcudart.so if only libcudart.so.<major> exists

CUDA ops are built when a GPU is visible (``nvidia-smi``) or when ``MMDYNAMIXER_CUDA_OPS=1`` asks for them on a
host without one (a Docker image built on a GPU-less machine); ``MMDYNAMIXER_CUDA_OPS=0`` keeps CPU-only ops on a
GPU machine. They need an nvcc of torch's CUDA major: ``CUDA_HOME`` (or ``CUDA_PATH``) if set, else the first of
``nvcc`` on ``PATH``, ``/usr/local/cuda`` (``MMDYNAMIXER_SYSTEM_CUDA_HOME`` names another, for tests) and a toolkit
set-up installed into the venv before (a candidate counts only with ``include/cuda_runtime.h`` beside its
``bin/nvcc``: a wrapper script on ``PATH`` is no CUDA_HOME). If none matches, the registry's
``cuda-toolkit[nvcc,cccl]`` of the version torch's wheel pins is installed into the venv (CUDA >= 13, whose wheels
share one tree, ``site-packages/nvidia/cu<major>``, usable as ``CUDA_HOME``).
Archs (``TORCH_CUDA_ARCH_LIST``): the user's, else the visible GPUs' compute capabilities, else
:data:`DEFAULT_ARCHS` (A100, H100/H200, B200). The decision (:func:`decide`) is a pure function of
:class:`HostFacts`, which :func:`gather_facts` reads from the host.
"""
import argparse
import dataclasses
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

ENV_VAR = 'MMDYNAMIXER_CUDA_OPS'
# Archs built when no GPU is visible and TORCH_CUDA_ARCH_LIST is unset: A100, H100/H200, B200.
DEFAULT_ARCHS = '8.0;9.0;10.0'
# The oldest compute capability each CUDA major can compile for (CUDA 13 dropped Volta, sm_70).
MIN_ARCH = {11: (3, 5), 12: (5, 0), 13: (7, 5)}
# The first CUDA major whose registry wheels install nvcc, headers and libraries into one CUDA_HOME tree.
FIRST_SINGLE_TREE_MAJOR = 13
TOOLKIT_EXTRAS = 'nvcc,cccl'
SYSTEM_CUDA_HOME = '/usr/local/cuda'
ARCH_PATTERN = re.compile(r'^(\d+)\.(\d+)([af]?)(\+PTX)?$')


@dataclasses.dataclass
class HostFacts:
    """What the decision depends on.

    ``gpu_caps``: compute capabilities ``nvidia-smi`` reports, one per visible GPU (empty: none visible; None: GPUs
    are visible but their capabilities could not be read). ``nvcc``: candidate CUDA homes in search order, each
    with its nvcc's ``major.minor`` (None: no working nvcc with the CUDA headers there). ``toolkit_pin``: the
    ``cuda-toolkit`` version torch's wheel requires (None: it names none).
    """
    torch_version: str
    torch_cuda: Optional[str]
    gpu_caps: Optional[List[str]]
    env: Mapping[str, str]
    nvcc: Dict[str, Optional[str]]
    venv_cuda_home: Optional[str]
    toolkit_pin: Optional[str]


@dataclasses.dataclass
class Plan:
    """How to build mmcv: ``device_tag`` names the build in the wheel cache ('cpu' or 'cuda13.0-sm80_sm90');
    ``toolkit`` is the pip requirement to install first (None: use ``cuda_home`` as it is)."""
    device_tag: str
    reason: str
    cuda_home: Optional[str] = None
    arch_list: Optional[str] = None
    toolkit: Optional[str] = None

    @property
    def cuda(self) -> bool:
        return self.device_tag != 'cpu'


def parse_arch_list(text: str, cuda_major: int, origin: str) -> List[Tuple[int, int, str]]:
    """'8.0;9.0+PTX 10.0a' -> sorted, deduplicated (major, minor, suffix) entries, each buildable by CUDA
    ``cuda_major``. ``origin`` names where the list came from, for the error message."""
    entries = set()
    for item in re.split(r'[;\s]+', text.strip()):
        if not item:
            continue
        match = ARCH_PATTERN.match(item)
        if match is None:
            raise ValueError(f'{origin}: arch {item!r} is not a compute capability; allowed: entries like "8.0", '
                             f'"9.0a", "8.6+PTX", separated by ";"')
        major, minor = int(match.group(1)), int(match.group(2))
        oldest = MIN_ARCH.get(cuda_major)
        if oldest is not None and (major, minor) < oldest:
            raise ValueError(f'{origin}: arch {item} (sm_{major}{minor}) cannot be built by CUDA {cuda_major}, whose '
                             f'oldest arch is {oldest[0]}.{oldest[1]}; torch built for CUDA {cuda_major} cannot run '
                             f'there either')
        entries.add((major, minor, (match.group(3) or '') + (match.group(4) or '')))
    if not entries:
        raise ValueError(f'{origin}: no arch given; allowed: entries like "8.0;9.0"')
    return sorted(entries)


def _arch_list(entries) -> str:
    return ';'.join(f'{major}.{minor}{suffix}' for major, minor, suffix in entries)


def _arch_tag(entries) -> str:
    return '_'.join(f'sm{major}{minor}{suffix.replace("+PTX", "+ptx")}' for major, minor, suffix in entries)


def _major(version: str) -> int:
    return int(version.split('.')[0])


def _major_minor(version: str) -> str:
    return '.'.join(version.split('.')[:2])


def decide(facts: HostFacts) -> Plan:
    """The build for these facts; ValueError says why a requested or needed CUDA build cannot be made."""
    requested = facts.env.get(ENV_VAR, '').strip()
    if requested not in ('', '0', '1'):
        raise ValueError(f'{ENV_VAR}={requested!r}; allowed: 1 (build CUDA ops even without a visible GPU), '
                         f'0 (CPU-only ops even with one) or unset (CUDA ops when a GPU is visible)')
    if requested == '0':
        return Plan('cpu', f'{ENV_VAR}=0: CPU-only ops')
    gpu_visible = facts.gpu_caps is None or len(facts.gpu_caps) > 0
    if requested != '1' and not gpu_visible:
        return Plan('cpu', f'no GPU visible and {ENV_VAR} unset: CPU-only ops')
    why = f'{ENV_VAR}=1' if requested == '1' else 'a GPU is visible'
    if not facts.torch_cuda:
        raise ValueError(f'{why}, but torch {facts.torch_version} is a CPU-only build: install a CUDA build of '
                         f'torch, or set {ENV_VAR}=0 for CPU-only ops')
    cuda_major = _major(facts.torch_cuda)

    mmcv_args = facts.env.get('MMCV_CUDA_ARGS', '')
    if 'arch' in mmcv_args:
        raise ValueError(f'MMCV_CUDA_ARGS={mmcv_args!r} holds an arch flag, which makes torch ignore '
                         f'TORCH_CUDA_ARCH_LIST (and the cached wheel would not name its archs): remove it and '
                         f'set TORCH_CUDA_ARCH_LIST instead')
    user_archs = facts.env.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if user_archs:
        archs = parse_arch_list(user_archs, cuda_major, f'TORCH_CUDA_ARCH_LIST={user_archs!r}')
        arch_origin = 'from TORCH_CUDA_ARCH_LIST'
    elif facts.gpu_caps:
        archs = parse_arch_list(';'.join(facts.gpu_caps), cuda_major,
                                f'the visible GPUs (compute capabilities {", ".join(facts.gpu_caps)})')
        arch_origin = 'the visible GPUs\' archs'
    elif facts.gpu_caps is None:
        raise ValueError('a GPU is visible but nvidia-smi does not report its compute capability (CUDA '
                         f'{cuda_major} needs a newer driver): set TORCH_CUDA_ARCH_LIST, e.g. "{DEFAULT_ARCHS}"')
    else:
        archs = parse_arch_list(DEFAULT_ARCHS, cuda_major, 'DEFAULT_ARCHS')
        arch_origin = 'the default: no GPU visible'

    cuda_home, nvcc_version, toolkit, toolkit_note = _choose_toolkit(facts, cuda_major, why)
    return Plan(f'cuda{_major_minor(nvcc_version)}-{_arch_tag(archs)}',
                f'{why}: CUDA ops for {_arch_list(archs)} ({arch_origin}) with {toolkit_note}',
                cuda_home=cuda_home, arch_list=_arch_list(archs), toolkit=toolkit)


def _choose_toolkit(facts: HostFacts, cuda_major: int, why: str) -> Tuple[str, str, Optional[str], str]:
    """(CUDA_HOME, its nvcc version, the pip requirement to install there or None, a note)."""
    user_home = facts.env.get('CUDA_HOME') or facts.env.get('CUDA_PATH')
    wanted = f'torch {facts.torch_version} needs nvcc of CUDA {cuda_major}'
    if user_home:
        found = facts.nvcc.get(user_home)
        if found is None or _major(found) != cuda_major:
            raise ValueError(f'{why} and CUDA_HOME={user_home} has {"nvcc " + found if found else "no nvcc"}; '
                             f'{wanted}: point CUDA_HOME at such a toolkit, or unset it so set-up installs one '
                             f'into the venv')
        return user_home, found, None, f'nvcc {found} from CUDA_HOME={user_home}'
    for home, found in facts.nvcc.items():
        if found is not None and _major(found) == cuda_major:
            return home, found, None, f'nvcc {found} from {home}'
    others = ', '.join(f'{found} at {home}' for home, found in facts.nvcc.items() if found) or 'none'
    if cuda_major < FIRST_SINGLE_TREE_MAJOR or facts.venv_cuda_home is None:
        raise ValueError(f'{why}: {wanted} (found: {others}); the registry\'s CUDA {cuda_major} wheels do not form '
                         f'a CUDA_HOME: install a CUDA {cuda_major} toolkit and set CUDA_HOME')
    version = facts.toolkit_pin or f'{_major_minor(facts.torch_cuda)}.*'
    toolkit = f'cuda-toolkit[{TOOLKIT_EXTRAS}]=={version}'
    nvcc_version = facts.toolkit_pin or facts.torch_cuda
    return facts.venv_cuda_home, nvcc_version, toolkit, f'{toolkit} installed into the venv (other nvcc: {others})'


def toolkit_version(cuda_home: Path) -> Optional[str]:
    """'13.0' from ``bin/nvcc --version`` ('... release 13.0, V13.0.88'); None if it does not run or
    ``include/cuda_runtime.h`` is missing."""
    if not (cuda_home / 'include' / 'cuda_runtime.h').is_file():
        return None
    try:
        out = subprocess.run([str(cuda_home / 'bin' / 'nvcc'), '--version'], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'release (\d+\.\d+)', out)
    return match.group(1) if match else None


def visible_gpu_caps() -> Optional[List[str]]:
    """Compute capabilities of the GPUs ``nvidia-smi`` lists; [] if it lists none or is missing; None if it lists
    GPUs but cannot report their capabilities (drivers older than 510)."""
    if shutil.which('nvidia-smi') is None:
        return []
    listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True)
    if listed.returncode != 0 or 'GPU' not in listed.stdout:
        return []
    caps = subprocess.run(['nvidia-smi', '--query-gpu=compute_cap', '--format=csv,noheader'],
                          capture_output=True, text=True)
    values = [line.strip() for line in caps.stdout.splitlines() if line.strip()]
    if caps.returncode != 0 or not all(ARCH_PATTERN.match(value) for value in values):
        return None
    return values


def torch_toolkit_pin() -> Optional[str]:
    """The cuda-toolkit version torch's wheel requires ('13.0.3'), None if it names none."""
    for requirement in importlib.metadata.requires('torch') or []:
        match = re.match(r'cuda-toolkit(\[[^\]]*\])?\s*==\s*([0-9][\w.]*)', requirement)
        if match:
            return match.group(2)
    return None


def gather_facts(env: Mapping[str, str] = os.environ) -> HostFacts:
    """The facts of this host, for the torch of the running interpreter (the venv's)."""
    import torch

    homes = []
    if env.get('CUDA_HOME') or env.get('CUDA_PATH'):
        homes.append(env.get('CUDA_HOME') or env.get('CUDA_PATH'))
    on_path = shutil.which('nvcc', path=env.get('PATH'))
    if on_path:
        homes.append(str(Path(on_path).parent.parent))  # as torch's extension builder derives it
    homes.append(env.get('MMDYNAMIXER_SYSTEM_CUDA_HOME', SYSTEM_CUDA_HOME))
    venv_cuda_home = None
    if torch.version.cuda:
        venv_cuda_home = str(Path(sysconfig.get_paths()['purelib']) / 'nvidia' / f'cu{_major(torch.version.cuda)}')
        homes.append(venv_cuda_home)
    nvcc = {home: toolkit_version(Path(home)) for home in dict.fromkeys(homes)}
    return HostFacts(torch_version=torch.__version__, torch_cuda=torch.version.cuda, gpu_caps=visible_gpu_caps(),
                     env=dict(env), nvcc=nvcc, venv_cuda_home=venv_cuda_home, toolkit_pin=torch_toolkit_pin())


def shell_assignments(plan: Plan) -> str:
    """The plan as lines ``name=value`` for bash's eval."""
    values = dict(device_tag=plan.device_tag, cuda_home=plan.cuda_home or '', cuda_arch_list=plan.arch_list or '',
                  cuda_toolkit=plan.toolkit or '', cuda_reason=plan.reason)
    return ''.join(f'{name}={shlex.quote(value)}\n' for name, value in values.items())


def link_cudart(cuda_home: Path) -> Optional[Path]:
    """Make ``-lcudart`` link against ``cuda_home``: the registry's wheels ship ``lib/libcudart.so.<major>`` but no
    ``libcudart.so``. Returns the link created, None if a ``libcudart.so`` is there already."""
    libdirs = [cuda_home / 'lib64', cuda_home / 'lib']
    if any((libdir / 'libcudart.so').exists() for libdir in libdirs):
        return None
    for libdir in libdirs:
        versioned = sorted(libdir.glob('libcudart.so.[0-9]*'), key=lambda p: len(p.name))
        if versioned:
            link = libdir / 'libcudart.so'
            if link.is_symlink():  # a dangling link left by an older toolkit
                link.unlink()
            link.symlink_to(versioned[0].name)
            return link
    raise FileNotFoundError(f'CUDA_HOME={cuda_home} has no libcudart.so* in lib64/ or lib/: install the CUDA '
                            f'runtime there (pip: cuda-toolkit[cudart])')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('plan', help='print the build plan as shell assignments')
    link = commands.add_parser('link-cudart', help='create CUDA_HOME/lib*/libcudart.so if missing')
    link.add_argument('cuda_home', type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == 'plan':
            sys.stdout.write(shell_assignments(decide(gather_facts())))
        else:
            created = link_cudart(args.cuda_home)
            print(f'created {created} -> {os.readlink(created)}' if created else 'libcudart.so present',
                  file=sys.stderr)
    except (ValueError, OSError) as error:  # OSError: a CUDA_HOME without the runtime, or not writable
        print(f'cuda_setup: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
