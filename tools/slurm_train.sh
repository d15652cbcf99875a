#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS from the environment.
source "$(dirname "$0")/pick_python.sh"  # ROOT and PYTHON: $PYTHON, the active env, .venv or python
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
if [[ "$WORK_DIR" == -* ]]; then  # no WORK_DIR given: $4 is already a train.py argument
    WORK_DIR=""
    set -- "$1" "$2" "$3" "" "${@:4}"
fi
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=("${@:5}")
if [[ -n "$WORK_DIR" ]]; then
    PY_ARGS=(--work-dir="$WORK_DIR" "${PY_ARGS[@]}")
fi

PYTHONPATH="$ROOT":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" --launcher="slurm" "${PY_ARGS[@]}"
