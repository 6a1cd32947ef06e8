#!/usr/bin/env bash
# The project's test command: lint, type check, then the whole pytest suite.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv=${VENV:-$here/.venv}
export PANDA_BEHIND_REAL_LB=1
lint_dirs=(python tests)
[ -d bench ] && lint_dirs+=(bench)
"$venv/bin/ruff" format --check "${lint_dirs[@]}"
"$venv/bin/ruff" check "${lint_dirs[@]}"
"$venv/bin/mypy"
"$venv/bin/python" -m pytest -p no:cacheprovider tests "$@"
# The realstack tier (real PanDA relay + iDDS server, built and started by the tests; see realstack/).
# In CI it must run: missing prerequisites are installed, and fail the tier instead of skipping it.
if [ "${CI:-}" = true ]; then
    export REALSTACK_REQUIRED=1
    bash realstack/prereqs.sh
fi
if [ "${REALSTACK_SKIP:-0}" != 1 ]; then
    "$venv/bin/python" -m pytest -p no:cacheprovider -m realstack tests/realstack
fi
