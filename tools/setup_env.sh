#!/usr/bin/env bash
# Create or refresh .venv (repo root) with the tested OpenMMLab stack and mmdynamixer installed editable.
# PYTHON (default python3) creates it; MMDYNAMIXER_VENV puts it elsewhere (tests use a temporary one).
# MMDYNAMIXER_STACK=floor|ceiling builds .venv-floor or .venv-ceiling instead: the same stack with the pins of
# requirements/stack-<name>.txt (the oldest and the newest torch we support) in place of constraints.txt's.
# Does nothing when the venv already matches its constraints, setup.py and this script.
# mmcv 2.x ships only as source: it is built once per (mmcv, torch, Python, CUDA archs) and the wheel kept
# under ${MMDYNAMIXER_CACHE:-~/.cache/mmdynamixer}, so later environments install it in seconds.
# mmcv's CUDA ops are built when a GPU is visible or MMDYNAMIXER_CUDA_OPS=1 (a GPU-less build host), for
# TORCH_CUDA_ARCH_LIST (default: the visible GPUs' archs, else 8.0;9.0;10.0); with no nvcc of torch's CUDA
# major, the registry's cuda-toolkit is installed into the venv. MMDYNAMIXER_CUDA_OPS=0: CPU-only ops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMDYNAMIXER_STACK:-default}"
PYTHON="${PYTHON:-python3}"
CACHE="${MMDYNAMIXER_CACHE:-$HOME/.cache/mmdynamixer}"
if [[ "$STACK" == default ]]; then
    VENV="${MMDYNAMIXER_VENV:-$ROOT/.venv}"
    constraint_files=("$ROOT/requirements/constraints.txt")
else
    if [[ ! -f "$ROOT/requirements/stack-$STACK.txt" ]]; then
        known=default
        for file in "$ROOT"/requirements/stack-*.txt; do known+=", $(basename "$file" .txt | cut -d- -f2-)"; done
        echo "MMDYNAMIXER_STACK=$STACK: no requirements/stack-$STACK.txt; the stacks are $known" >&2
        exit 2
    fi
    VENV="${MMDYNAMIXER_VENV:-$ROOT/.venv-$STACK}"
    constraint_files=("$ROOT/requirements/constraints.txt" "$ROOT/requirements/stack-$STACK.txt")
fi
STAMP="$VENV/.mmdynamixer-env"

want="$("$PYTHON" --version 2>&1) $(cat "${constraint_files[@]}" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" \
    "$ROOT/tools/cuda_setup.py" | sha256sum | cut -d' ' -f1) ${MMDYNAMIXER_CUDA_OPS:-} ${TORCH_CUDA_ARCH_LIST:-}"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

log() { echo "[setup_env $(date +%H:%M:%S)] $*"; }
# A new venv takes 5.7-6.4 GB (PyPI's torch brings its CUDA libraries and triton): refuse at once rather than
# let pip die of a full disk halfway through.
if [[ ! -d "$VENV/lib" ]]; then
    need_gib="${MMDYNAMIXER_MIN_FREE_GIB:-8}"
    parent="$(dirname "$VENV")"
    free_kib="$(df -Pk "$parent" | awk 'NR == 2 {print $4}')"
    if (( free_kib < need_gib * 1024 * 1024 )); then
        echo "setup_env: $parent has $((free_kib / 1024 / 1024)) GiB free; a new $STACK-stack venv takes about 6.5 GB" \
            "(torch with PyPI's CUDA libraries) and set-up asks for $need_gib GiB (MMDYNAMIXER_MIN_FREE_GIB)." \
            "Free some space, or run the default stack alone: MMDYNAMIXER_STACKS=default bash tools/run_tests.sh" >&2
        exit 3
    fi
fi
start=$SECONDS
log "creating or refreshing $VENV ($STACK stack)"
rm -f "$STAMP"
"$PYTHON" -m venv "$VENV"
CONSTRAINTS="${constraint_files[0]}"
if [[ "$STACK" != default ]]; then
    # The stack's pins replace constraints.txt's (pip refuses two pins of one package).
    CONSTRAINTS="$VENV/constraints.txt"
    overridden="$(grep -oE '^[A-Za-z0-9_.-]+==' "${constraint_files[1]}" | paste -sd'|' -)"
    { grep -vE "^($overridden)" "${constraint_files[0]}"; cat "${constraint_files[1]}"; } > "$CONSTRAINTS"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
pin() { grep -E "^$1==" "$CONSTRAINTS" | cut -d= -f3; }

"${PIP[@]}" install -q -c "$CONSTRAINTS" setuptools wheel ninja
log "installing torch, torchvision, numpy, opencv"
"${PIP[@]}" install -q -c "$CONSTRAINTS" torch torchvision numpy opencv-python

# mmcv: from the registry's sdist, with its compiled ops.
mmcv_version="$(pin mmcv)"
torch_version="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
py_tag="$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
# CPU-only ops, or CUDA ops (a GPU is visible, or MMDYNAMIXER_CUDA_OPS=1) with an nvcc of torch's CUDA major,
# installed into the venv from the registry when none is found; tools/cuda_setup.py decides and explains.
cuda_plan="$("$VENV/bin/python" "$ROOT/tools/cuda_setup.py" plan)"
eval "$cuda_plan"
log "mmcv ops: $cuda_reason"
if [[ "$device_tag" != cpu ]]; then
    if [[ -n "$cuda_toolkit" ]]; then
        log "installing $cuda_toolkit into the venv (CUDA_HOME=$cuda_home)"
        "${PIP[@]}" install -q -c "$CONSTRAINTS" "$cuda_toolkit"
    fi
    "$VENV/bin/python" "$ROOT/tools/cuda_setup.py" link-cudart "$cuda_home"
    export FORCE_CUDA=1 CUDA_HOME="$cuda_home" TORCH_CUDA_ARCH_LIST="$cuda_arch_list" PATH="$cuda_home/bin:$PATH"
fi
wheel_dir="$CACHE/wheels/mmcv-$mmcv_version-$py_tag-torch$torch_version-$device_tag"
if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $mmcv_version ($device_tag) from source, once: about 11-25 minutes on 2 cores for CPU ops," \
        "50 or more with CUDA ops for two archs"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$mmcv_version" -d "$work"
    tar -xzf "$work/mmcv-$mmcv_version.tar.gz" -C "$work"
    # torch >= 2.14's headers refuse C++17; mmcv 2.1.0 hard-codes -std=c++17, which older torch needs.
    if [[ "$(printf '2.14\n%s\n' "${torch_version%%+*}" | sort -V | head -1)" == 2.14 ]]; then
        sed -i 's/c++17/c++20/g' "$work/mmcv-$mmcv_version/setup.py"
    fi
    # No build isolation: the isolated build cannot see torch and silently skips the ops.
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel -q --no-build-isolation --no-deps "$work/mmcv-$mmcv_version" -w "$work/wheel"
    mkdir -p "$(dirname "$wheel_dir")"
    rm -rf "$wheel_dir.partial"
    mv "$work/wheel" "$wheel_dir.partial"
    mv "$wheel_dir.partial" "$wheel_dir"
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl

log "installing the toolboxes and mmdynamixer (editable)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation -e "$ROOT[openmmlab,demo,tests,deploy]"

# Fail here, not in a worker, if the compiled ops are missing.
"$VENV/bin/python" -c "
import mmcv, mmcv.ops, torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
if torch.cuda.is_available() and '$device_tag' != 'cpu':
    nms(boxes.cuda(), torch.tensor([0.9, 0.8]).cuda(), 0.5)
import mmpretrain.models, mmdet.models, mmseg.models, timm, mmdynamixer
print('stack ok: torch', torch.__version__, 'mmcv', mmcv.__version__)
"
echo "$want" > "$STAMP"
log "ready in $((SECONDS - start)) s"
