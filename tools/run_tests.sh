#!/usr/bin/env bash
# The test suite: the whole suite in the default stack (.venv), then the tests marked `stack` in the floor and
# ceiling stacks (.venv-floor, .venv-ceiling: the oldest and newest torch we support, requirements/stack-*.txt).
# Each environment is set up or refreshed by tools/setup_env.sh first. Extra args go to every pytest run;
# MMDYNAMIXER_STACKS picks the stacks (default: "default floor ceiling").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
failed=()
for stack in ${MMDYNAMIXER_STACKS:-default floor ceiling}; do
    MMDYNAMIXER_STACK="$stack" bash "$ROOT/tools/setup_env.sh"
    if [[ "$stack" == default ]]; then
        python="$ROOT/.venv/bin/python"
        selection=(tests)
    else
        python="$ROOT/.venv-$stack/bin/python"
        # Only the modules holding marked tests are collected: others may not import on another torch.
        selection=(-m stack $(grep -l '^@pytest.mark.stack' tests/test_*.py))
    fi
    echo "== $stack stack: $("$python" -c 'import torch; print("torch", torch.__version__)')"
    # -rs: every skipped test and its reason in the summary. Packages of the tested stack are imported, not
    # skipped for: a missing one fails its tests.
    "$python" -m pytest "${selection[@]}" -rs "$@" || failed+=("$stack")
done
if (( ${#failed[@]} )); then
    echo "tests failed in the ${failed[*]} stack(s)" >&2
    exit 1
fi
