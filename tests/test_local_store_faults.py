# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Database faults in the middle of a run of the local service.

The scheduler's transaction fails while jobs run: another process holds an
exclusive lock on the database for longer than the busy timeout, or the
state filesystem is full. The fault is shown by ``panda-local status`` while
it lasts; once it is gone the run finishes with every job run exactly once.
Jobs log every start and end to a file outside the state directory.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_harness import (
    FINAL,
    JobDef,
    LocalService,
    RelayClient,
    WorkDef,
    build_workflow,
    log_cmd,
    logged_events,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

N = 8


def _works(log: Path) -> list[WorkDef]:
    body = "sleep 0.3;"
    return [
        WorkDef("wf_01_a", log_cmd(log, body), tuple(JobDef(f"a{i}") for i in range(N))),
        WorkDef("wf_02_b", log_cmd(log, body),
                tuple(JobDef(f"b{i}", (("wf_01_a", f"a{i}"),)) for i in range(N))),
        WorkDef("wf_03_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_02_b",)),
    ]  # fmt: skip


def _assert_each_job_ran_once(client: RelayClient, request_id: int, log: Path) -> None:
    assert client.wait(request_id, timeout=120) == "Finished"
    names = {f"a{i}" for i in range(N)} | {f"b{i}" for i in range(N)} | {FINAL}
    events = logged_events(log)
    assert Counter(name for kind, name in events if kind == "start") == Counter(dict.fromkeys(names, 1))
    assert Counter(name for kind, name in events if kind == "end") == Counter(dict.fromkeys(names, 1))
    jobs = client.jobs(request_id)
    assert {name: (row["status"], row["attempt_nr"]) for name, row in jobs.items()} == dict.fromkeys(
        names, ("Available", 1)
    )
    for i in range(N):
        assert events.index(("end", f"a{i}")) < events.index(("start", f"b{i}"))


def _status_text(service: LocalService) -> str:
    argv = [
        sys.executable,
        "-m",
        "lsst.ctrl.bps.panda.local.cli",
        "status",
        "--state-dir",
        service.layout.root,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout


def _fault(service: LocalService) -> dict | None:
    status = service.status()
    return status.get("fault") if status else None


def test_database_locked_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    service = LocalService(str(tmp_path / "state"), workers=2, start_args=("--db-timeout", "0.5")).start()
    try:
        client = service.client()
        request_id = client.result("submit", build_workflow("wf_locked", _works(log)))
        wait_for(lambda: sum(kind == "end" for kind, _ in logged_events(log)) >= 3)
        locker = sqlite3.connect(service.layout.database, timeout=30)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            fault = wait_for(lambda: _fault(service), timeout=60)
            assert "database is locked" in fault["error"]  # type: ignore[index]
            started_during = len(logged_events(log))
            text = _status_text(service)
            assert "FAULT: database writes failing" in text and "database is locked" in text
            time.sleep(1.5)  # several retries, each longer than the busy timeout
            # Nothing new started while nothing could be recorded.
            assert [e for e in logged_events(log)[started_during:] if e[0] == "start"] == []
        finally:
            locker.rollback()
            locker.close()
        _assert_each_job_ran_once(client, request_id, log)
        assert _fault(service) is None
        log_text = Path(service.layout.log_file).read_text()
        assert "Database write failed (database is locked)" in log_text
        assert "Database writes work again" in log_text
    finally:
        service.stop()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs the right to mount, e.g. root)."""
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as stream:
        try:
            while True:
                stream.write(chunk)
        except OSError:
            pass
    return filler


def test_state_filesystem_full(small_tmpfs: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    service = LocalService(str(small_tmpfs), workers=2).start()
    try:
        client = service.client()
        request_id = client.result("submit", build_workflow("wf_full", _works(log)))
        wait_for(lambda: sum(kind == "end" for kind, _ in logged_events(log)) >= 3)
        filler = _fill(small_tmpfs)
        try:
            fault = wait_for(lambda: _fault(service), timeout=60)
            assert "full" in fault["error"]  # type: ignore[index]
            time.sleep(1.5)
        finally:
            os.unlink(filler)
        _assert_each_job_ran_once(client, request_id, log)
        assert _fault(service) is None
    finally:
        service.stop()
