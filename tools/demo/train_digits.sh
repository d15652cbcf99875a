#!/usr/bin/env bash
# The embedded demo: sets up (or refreshes) .venv, writes scikit-learn's digits to data/digits as an
# ImageNet-style folder, trains a DynaMixer on it with tools/dist_train.sh on 2 CPU processes, and ends by
# printing the best top-1 and its epoch, the checkpoint, and the command that classifies an image with it, and by
# drawing the training loss and validation top-1 curves into WORK_DIR/curves.png.
# Extra args go to train.py (e.g. --work-dir, --cfg-options).
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    echo "usage: bash tools/demo/train_digits.sh [TRAIN_ARGS ...]"
    echo "Sets up .venv, writes data/digits, trains the digits config on 2 CPU processes and summarizes the run;"
    echo "TRAIN_ARGS go to tools/train.py (e.g. --work-dir DIR, --cfg-options KEY=VALUE)."
    exit 0
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONFIG=configs/dynamixer/dynamixer-tiny_2xb64_digits.py
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
export PYTHON="$ROOT/.venv/bin/python"
if [[ ! -d data/digits ]]; then  # the writer renames it into place only when complete
    "$PYTHON" tools/demo/prepare_digits.py data/digits
fi
WORK_DIR="work_dirs/$(basename "$CONFIG" .py)"  # train.py's default, unless --work-dir is given
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --work-dir) WORK_DIR="${args[$((i + 1))]:-$WORK_DIR}" ;;
        --work-dir=*) WORK_DIR="${args[$i]#--work-dir=}" ;;
    esac
done
bash tools/dist_train.sh "$CONFIG" 2 "$@"
held_out=(data/digits/val/*/*.png)
echo
"$PYTHON" tools/demo/summarize_run.py "$WORK_DIR" "$CONFIG" --image "${held_out[0]}"
