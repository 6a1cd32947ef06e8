# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``panda-local stop`` and the pid file: removed on stop, checked by identity.

A pid file left behind (service killed) may name a pid that an unrelated
process reuses: ``stop`` must not signal that process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_harness import LocalService

from lsst.ctrl.bps.panda.local.layout import StateLayout
from lsst.ctrl.bps.panda.local.pidfile import ServiceProcess, process_start_time

pytestmark = pytest.mark.timeout(120)


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", *args, "--state-dir", str(state_dir)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_stop_removes_the_pid_file(tmp_path: Path) -> None:
    service = LocalService(str(tmp_path / "state"), workers=1).start()
    pid_file = Path(service.layout.pid_file)
    recorded = ServiceProcess.read(str(pid_file))
    assert recorded is not None and recorded.pid == service.pid
    assert recorded.start_time == process_start_time(service.pid)
    done = _cli(tmp_path / "state", "stop")
    assert done.returncode == 0 and f"(pid {recorded.pid}) stopped" in done.stdout
    assert not pid_file.exists()
    assert not recorded.is_running()
    assert "not running" in _cli(tmp_path / "state", "stop").stdout


@pytest.mark.parametrize("with_start_time", [True, False])
def test_stop_does_not_signal_a_process_that_reused_the_pid(tmp_path: Path, with_start_time: bool) -> None:
    layout = StateLayout(str(tmp_path / "state"))
    os.makedirs(layout.root)
    other = subprocess.Popen(["sleep", "60"])
    try:
        # A stale pid file naming a live unrelated process: with a start time
        # that is not its own, or (older files) without one.
        stale = f"{other.pid} {process_start_time(other.pid) - 1}\n" if with_start_time else f"{other.pid}\n"  # type: ignore[operator]
        Path(layout.pid_file).write_text(stale)
        done = _cli(tmp_path / "state", "stop")
        assert done.returncode == 0, done.stderr
        assert f"removed the stale pid file naming pid {other.pid}" in done.stdout
        assert other.poll() is None, "stop signalled an unrelated process"
        assert not Path(layout.pid_file).exists()
        status = _cli(tmp_path / "state", "status")
        assert status.returncode == 3 and "down" in status.stdout
    finally:
        other.kill()
        other.wait()
