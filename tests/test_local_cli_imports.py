# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``panda-local`` does not import ctrl_bps or the butler for its commands.

The console script (`panda_local_entry`) defers ``lsst.ctrl.bps``'s
``__init__``; code that uses ``lsst.ctrl.bps`` still gets the whole package.
Wall times are measured by ``bench/cli_startup.py``, not here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

HEAVY = ("lsst.daf.butler", "lsst.ctrl.bps.bps_config", "sqlalchemy", "idds", "starlette")


def _console_script() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "panda-local")
    found = beside if os.path.exists(beside) else shutil.which("panda-local")
    assert found, "panda-local console script not installed"
    return found


def _imported(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", PANDA_BEHIND_REAL_LB="1")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    names = {
        line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    return done, names


@pytest.mark.parametrize("command", ["status", "env", "stop", "jobs 1", "watch 1", "--help"])
def test_commands_do_not_import_ctrl_bps_or_the_butler(tmp_path: Path, command: str) -> None:
    # A service recorded on a port where nothing listens.
    (tmp_path / "service.json").write_text('{"host": "127.0.0.1", "port": 1, "pid": 0}')
    options = [] if command == "--help" else ["--state-dir", str(tmp_path)]
    done, names = _imported([_console_script(), *command.split(), *options])
    assert done.returncode in (0, 1, 3), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "lsst.ctrl.bps.panda.local.cli" in names
    assert sorted(name for name in names if name.startswith(HEAVY)) == []


def test_deferred_package_is_complete_once_used() -> None:
    code = (
        "import panda_local_entry, sys\n"
        "assert panda_local_entry.defer_package_init()\n"
        "import lsst.ctrl.bps.panda.local.cli\n"
        "assert 'lsst.ctrl.bps.bps_config' not in sys.modules\n"
        "from lsst.ctrl.bps import BpsConfig, WmsStates\n"
        "import lsst.ctrl.bps\n"
        "from lsst.ctrl.bps.panda import PanDAService\n"
        "assert lsst.ctrl.bps.BpsConfig is BpsConfig\n"
        "assert issubclass(PanDAService, lsst.ctrl.bps.BaseWmsService)\n"
        "print(WmsStates.SUCCEEDED.name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SUCCEEDED"
