# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Crash safety: ``kill -9`` of the local service in the middle of a run.

After ``start`` on the same state directory the run completes: no job is
lost, and no job that succeeded runs again. Jobs log every start and end to a
file, so what ran, and how often, is seen from outside the service.
"""

from __future__ import annotations

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

from lsst.ctrl.bps.panda.local.server import pid_alive

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LocalService]:
    svc = LocalService(str(tmp_path / "state"), workers=2)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _restart(service: LocalService, client: RelayClient) -> None:
    """Start again on the same state directory and port."""
    service.port = int(client.exports["PANDA_URL"].rsplit(":", 1)[1].split("/", 1)[0])
    service.start()


def test_kill_9_while_jobs_sleep(service: LocalService, tmp_path: Path) -> None:
    log = tmp_path / "log"
    # b0 ends while the service is down; b1's first attempt sleeps through the
    # restart (the restarted service kills it and runs it again).
    body = 'case "${IN/L}" in b0) sleep 1;; b1) [ "$PanDA_AttemptNr" -gt 1 ] || sleep 60;; esac;'
    works = [
        WorkDef("wf_01_a", log_cmd(log), (JobDef("a0"), JobDef("a1"))),
        WorkDef("wf_02_b", log_cmd(log, body), (JobDef("b0", (("wf_01_a", "a0"),)),
                                                JobDef("b1", (("wf_01_a", "a1"),)))),
        WorkDef("wf_03_c", log_cmd(log), (JobDef("c0", (("wf_02_b", "b0"), ("wf_02_b", "b1"))),)),
        WorkDef("wf_04_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_03_c",)),
    ]  # fmt: skip
    client = service.client()
    request_id = client.result("submit", build_workflow("wf_crash", works))
    wait_for(lambda: {("start", "b0"), ("start", "b1")} <= set(logged_events(log)))
    pid = service.pid
    service.kill()
    assert not pid_alive(pid)
    wait_for(lambda: ("end", "b0") in logged_events(log))  # b0 finished with nobody watching
    assert ("end", "b1") not in logged_events(log)
    _restart(service, client)
    assert service.pid != pid
    assert client.wait(request_id, timeout=60) == "Finished"

    events = logged_events(log)
    starts = Counter(name for kind, name in events if kind == "start")
    ends = Counter(name for kind, name in events if kind == "end")
    assert ends == Counter({"a0": 1, "a1": 1, "b0": 1, "b1": 1, "c0": 1, FINAL: 1})
    assert starts == Counter({"a0": 1, "a1": 1, "b0": 1, "b1": 2, "c0": 1, FINAL: 1})
    jobs = client.jobs(request_id)
    assert {name: row["status"] for name, row in jobs.items()} == dict.fromkeys(ends, "Available")
    attempts = {name: row["attempt_nr"] for name, row in jobs.items()}
    assert attempts == {"a0": 1, "a1": 1, "b0": 1, "b1": 2, "c0": 1, FINAL: 1}
    assert position(events, "end", "b1") < position(events, "start", "c0")


def position(events: list[tuple[str, str]], kind: str, name: str) -> int:
    return events.index((kind, name))


def test_kill_9_during_many_short_jobs(service: LocalService, tmp_path: Path) -> None:
    log = tmp_path / "log"
    n = 30
    works = [
        WorkDef("wf_01_p", log_cmd(log, "sleep 0.1;"), tuple(JobDef(f"p{i}") for i in range(n))),
        WorkDef("wf_02_q", log_cmd(log, "sleep 0.1;"),
                tuple(JobDef(f"q{i}", (("wf_01_p", f"p{i}"),)) for i in range(n))),
        WorkDef("wf_03_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_02_q",)),
    ]  # fmt: skip
    client = service.client()
    request_id = client.result("submit", build_workflow("wf_crash_many", works))
    wait_for(lambda: sum(1 for kind, _ in logged_events(log) if kind == "end") >= n // 2)
    service.kill()
    done_before = {name for kind, name in logged_events(log) if kind == "end"}
    assert 0 < len(done_before) < 2 * n + 1
    _restart(service, client)
    assert client.wait(request_id, timeout=90) == "Finished"

    events = logged_events(log)
    ends = Counter(name for kind, name in events if kind == "end")
    assert set(ends) == {f"p{i}" for i in range(n)} | {f"q{i}" for i in range(n)} | {FINAL}
    assert set(ends.values()) == {1}  # nothing lost, nothing that succeeded ran twice
    jobs = client.jobs(request_id)
    assert {row["status"] for row in jobs.values()} == {"Available"}
    for name in done_before:
        assert jobs[name]["attempt_nr"] == 1, name
    for i in range(n):
        assert position(events, "end", f"p{i}") < position(events, "start", f"q{i}")


def test_stop_mid_run_reruns_the_interrupted_job_without_using_an_attempt(
    service: LocalService, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    body = '[ "$PanDA_AttemptNr" -gt 1 ] || sleep 60;'
    works = [WorkDef("wf_01_s", log_cmd(log, body), (JobDef("s0"),), max_attempt=1)]
    client = service.client()
    request_id = client.result("submit", build_workflow("wf_stop", works))
    wait_for(lambda: ("start", "s0") in logged_events(log))
    service.stop()  # SIGTERM: the running job is killed, its attempt is lost
    assert ("end", "s0") not in logged_events(log)
    _restart(service, client)
    assert client.wait(request_id, timeout=60) == "Finished"
    row = client.jobs(request_id)["s0"]
    assert (row["status"], row["attempt_nr"], row["trans_exit_code"]) == ("Available", 2, 0)
    assert [name for kind, name in logged_events(log) if kind == "end"] == ["s0"]
