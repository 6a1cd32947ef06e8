#!/usr/bin/env bash
# The project's test command: lint, type check, then the whole pytest suite.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv=${VENV:-$here/.venv}
export PANDA_BEHIND_REAL_LB=1
"$venv/bin/ruff" format --check python tests bench
"$venv/bin/ruff" check python tests bench
"$venv/bin/mypy"
"$venv/bin/python" -m pytest -p no:cacheprovider tests "$@"
