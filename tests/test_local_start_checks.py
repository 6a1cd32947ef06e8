# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``panda-local start`` keeps its state private, refuses what it cannot use.

The state directory ends up mode 0700; a token file others may write is
refused; a read-only or tiny filesystem gives one clear line, not a
traceback; ids the database cannot hold are refused with a clear message.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_harness import LocalService

from lsst.ctrl.bps.panda.local.layout import StateLayout

pytestmark = pytest.mark.timeout(180)


def _start(state_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", "start", "--port", "0",
            "--workers", "1", "--state-dir", str(state_dir)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _assert_one_line_refusal(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for word in words:
        assert word in lines[0]


def test_state_directory_is_made_private_and_ids_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    service = LocalService(str(root), workers=1).start()
    try:
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        assert os.path.exists(service.layout.database) and os.path.exists(service.layout.log_file)
        client = service.client()
        for bad in (2**63, 2**64, "   ", "12abc"):
            status, reply = client.call("get_requests", request_id=bad)
            assert status == 0 and reply[1][0] is False, reply
            assert "is not a request/transform id: ids are whole numbers from 0 to" in reply[1][1]
            assert "SQL" not in reply[1][1] and "Python int" not in reply[1][1]
        status, reply = client.call("abort", request_id=2**64)
        assert reply[1][0] is False and "not a request/transform id" in reply[1][1]
        assert client.result("get_requests", request_id=2**63 - 1) == []
    finally:
        service.stop()


@pytest.mark.parametrize("target", ["file", "directory"])
def test_token_writable_by_others_is_refused(tmp_path: Path, target: str) -> None:
    layout = StateLayout(str(tmp_path / "state"))
    os.makedirs(layout.config_root)
    Path(layout.token_file).write_text("{}")
    os.chmod(
        layout.token_file if target == "file" else layout.config_root, 0o666 if target == "file" else 0o777
    )
    done = _start(tmp_path / "state")
    _assert_one_line_refusal(done, "writable by group or others", "refusing to use it")
    assert not os.path.exists(layout.pid_file)


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _mount(path: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.mark.parametrize("sub", ["", "state"])
def test_start_on_a_read_only_filesystem(mount_point: Path, sub: str) -> None:
    _mount(mount_point, "ro,size=1m,mode=0700")
    done = _start(mount_point / sub if sub else mount_point)
    _assert_one_line_refusal(done, str(mount_point))
    assert "read-only file" in done.stderr.lower()


def test_start_on_a_tiny_filesystem(mount_point: Path) -> None:
    _mount(mount_point, "size=64k,mode=0700")
    _assert_one_line_refusal(_start(mount_point), "64 KiB free", "needs at least 8 MiB")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions; the tmpfs tests cover root")
def test_start_in_a_directory_it_cannot_write(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        done = _start(locked / "state")
        _assert_one_line_refusal(done, str(locked / "state"), "Permission denied")
    finally:
        os.chmod(locked, 0o700)
