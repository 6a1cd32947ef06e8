# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Guard: no tracked file names the absolute path of this checkout.

A test or script that reaches a file through the developer's own checkout
(``<checkout>/.venv/bin/...``) passes there and fails in every other
clone; recorded results that name one machine's paths mislead. The
checkout's path is computed at test time, so the guard holds wherever
the repository is cloned. Recorded real-server replies (``tests/data/``)
are exempt.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = ("tests/data/",)
# Any absolute path into a virtual environment's directory, whoever's.
VENV_PATH = re.compile(rb"""["'](/[^"'\s]*)?/\.venv/""")


def _tracked_files() -> list[str]:
    """Tracked files of the checkout, or skip when it is not a git one."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_the_checkout() -> None:
    needle = str(ROOT).encode()
    assert len(needle) > 1
    offenders = []
    for name in _tracked_files():
        path = ROOT / name
        if name.startswith(EXEMPT) or not path.is_file():
            continue
        data = path.read_bytes()
        if needle in data or VENV_PATH.search(data):
            offenders.append(name)
    assert offenders == [], f"tracked files naming {ROOT} or an absolute venv path: {offenders}"
