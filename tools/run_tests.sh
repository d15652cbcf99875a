#!/usr/bin/env bash
# The test suite: sets up (or refreshes) .venv, then runs pytest in it. Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# -rs: every skipped test and its reason in the summary. Packages of the tested stack are imported, not skipped
# for: a missing one fails its tests.
exec "$ROOT/.venv/bin/python" -m pytest tests -rs "$@"
