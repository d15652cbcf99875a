#!/usr/bin/env bash
# The GPU measurement of issue 28 in one run of under 8 minutes, for a lent GPU machine that has torch (any of
# 2.6-2.15, with its Triton) and no OpenMMLab stack.
#
#   bash tools/analysis/gpu_session.sh prepare [PYTHON_VERSION]   # here, with the registry: wheels into .gpu_wheels/
#   bash tools/analysis/gpu_session.sh run [OUT_DIR]              # there (carry .gpu_wheels): reports into OUT_DIR
#
# prepare downloads the pure-Python wheels of the engine stack for PYTHON_VERSION (default 3.12, the GPU machines'
# so far) and builds mmcv 2.1.0 without its compiled ops (mmcv-lite: mmpretrain's transforms and the Runner need no
# op). run installs them with --no-deps into a temporary folder on PYTHONPATH (nothing else is installed), then:
#   1. the fused kernel against the eager op on CUDA, forward and every gradient, for S, M and L (seconds);
#   2. gpu_check --step recipe, S bf16: ours eager / fused, the release; eager and compiled (the issue's headline);
#   3. gpu_check --step plain, S bf16: inference and the plain step, fused and the release;
#   4. gpu_check --step engine, S: tools/train.py on the bf16 config (compiled by default), loader workers needed;
#   5. gpu_check --step recipe, M and L bf16 and S fp16, fused and the release, as far as the time allows.
# Each step has a time budget (gpu_check --budget-s) so that the whole run ends within about 8 minutes; the reports
# (markdown and JSON) are written to OUT_DIR (default docs/gpu/<gpu>_<date>), named by step.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHEELS="$ROOT/.gpu_wheels"
PYTHON="${PYTHON:-python3}"

prepare() {
    local version="${1:-3.12}"
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$WHEELS" \
        mmengine==0.10.7 mmpretrain==1.2.0 addict yapf platformdirs termcolor mat4py modelindex model-index \
        ordered-set importlib-metadata==8.7.0 rich markdown-it-py mdurl pygments
    # OpenCV for mmcv's image transforms, installed there only if the machine lacks it.
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$WHEELS/opencv" \
        opencv-python-headless==4.11.0.86
    local sdist
    sdist="$(mktemp -d)"
    "$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$sdist" mmcv==2.1.0
    tar -xzf "$sdist"/mmcv-2.1.0.tar.gz -C "$sdist"
    MMCV_WITH_OPS=0 "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps -w "$WHEELS" "$sdist/mmcv-2.1.0"
    rm -rf "$sdist"
    du -sh "$WHEELS"
    echo "carry .gpu_wheels to the GPU machine (run's 'carry' list) and run: bash tools/analysis/gpu_session.sh run"
}

run() {
    local gpu date out
    gpu="$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name().split()[-1].lower())')"
    date="$(date +%Y-%m-%d)"
    out="${1:-$ROOT/docs/gpu/${gpu}_${date}}"
    mkdir -p "$out"
    local site
    site="$(mktemp -d)"
    if ! "$PYTHON" -c 'import mmpretrain' 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl
    fi
    if ! "$PYTHON" -c 'import cv2' 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/opencv/*.whl
    fi
    export PYTHONPATH="$ROOT:$site${PYTHONPATH:+:$PYTHONPATH}"
    cd "$ROOT"
    "$PYTHON" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
        torch.cuda.get_device_name())' | tee "$out/env.txt"
    local check="tools/analysis/gpu_check.py"
    # 1. The fused kernel on CUDA against the eager op: logits and every gradient.
    "$PYTHON" - <<'EOF' 2>&1 | tee "$out/fused_vs_eager.txt"
import torch
from mmdynamixer.models import DynaMixerNet
from mmdynamixer.testing import perturbed
from mmdynamixer.testing.models import logits_and_gradients
for arch in ('s', 'm', 'l'):
    model = perturbed(DynaMixerNet(arch)).cuda()
    x = torch.randn(2, 3, 224, 224, device='cuda')
    results = []
    for fused in (True, False):
        model.set_fused_mixing(fused)
        results.append(logits_and_gradients(model, x))
    worst = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(*results))
    print(f'{arch}: fused vs eager, float32, logits and all gradients: largest relative difference {worst:.2e}')
EOF
    # 2.-5. Throughput, each step within its budget.
    "$PYTHON" "$check" --step recipe --arch s --precision bf16 --budget-s 150 --out-dir "$out/recipe_s_bf16" || true
    "$PYTHON" "$check" --step plain --arch s --precision bf16 --impl ours-fused release --budget-s 60 \
        --out-dir "$out/plain_s_bf16" || true
    "$PYTHON" "$check" --step engine --arch s --out-dir "$out/engine_s" || true
    "$PYTHON" "$check" --step recipe --arch m l --precision bf16 --impl ours-fused release --no-compile \
        --budget-s 60 --out-dir "$out/recipe_ml_bf16" || true
    "$PYTHON" "$check" --step recipe --arch s --precision fp16 --impl ours-fused release --no-compile \
        --budget-s 40 --out-dir "$out/recipe_s_fp16" || true
    ls -R "$out"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash tools/analysis/gpu_session.sh prepare [PYTHON_VERSION] | run [OUT_DIR]" >&2; exit 2 ;;
esac
