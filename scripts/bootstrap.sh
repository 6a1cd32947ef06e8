#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install the project with its test and demo extras.
# Idempotent: re-running only re-installs when pyproject.toml changed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}

find_python() {
    if [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        local cand
        cand=$(ls -d "$(pyenv root)"/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$cand" ]; then echo "$cand"; return; fi
    fi
    for name in python3.14 python3.13 python3.12; do
        if "$name" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$name"; return
        fi
    done
    echo "bootstrap: no Python >= 3.12 found (set PYTHON312=/path/to/python)" >&2
    exit 1
}

if [ ! -x "$venv/bin/python" ]; then
    py=$(find_python)
    echo "bootstrap: creating $venv with $py"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
stamp="$venv/.installed-$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing lsst-ctrl-bps-panda[test,demo] into $venv"
    "$venv/bin/python" -m pip install -q -e "$here[test,demo]"
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
