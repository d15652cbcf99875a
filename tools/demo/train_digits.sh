#!/usr/bin/env bash
# The embedded demo: sets up (or refreshes) .venv, writes scikit-learn's digits to data/digits as an
# ImageNet-style folder, and trains a DynaMixer on it with tools/dist_train.sh on 2 CPU processes.
# Extra args go to train.py (e.g. --work-dir, --cfg-options).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
export PYTHON="$ROOT/.venv/bin/python"
if [[ ! -d data/digits ]]; then  # the writer renames it into place only when complete
    "$PYTHON" tools/demo/prepare_digits.py data/digits
fi
exec bash tools/dist_train.sh configs/dynamixer/dynamixer-tiny_2xb64_digits.py 2 "$@"
