# Sourced by dist_train.sh, dist_test.sh and slurm_train.sh: sets ROOT (the checkout) and PYTHON, the interpreter
# they run. $PYTHON when set; else the active virtual or conda environment's python; else the checkout's .venv
# (tools/setup_env.sh builds it); else python on PATH, and says so on stderr.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]]; then
        PYTHON=python
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
        echo "$(basename "$0"): no environment is active and $ROOT/.venv does not exist (bash tools/setup_env.sh" \
            "builds it): using $(command -v python || echo 'python, which is not on PATH'); set PYTHON to choose" >&2
    fi
fi
