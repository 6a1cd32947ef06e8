# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Event-service works on the local PanDA service, through panda-client.

An event-service work (``es`` set, ``max_events_per_job`` payloads per
PanDA job) runs the ready payloads of one event-service file in one PanDA
job, one after another in one slot; each payload has its own content row,
and a failed payload is retried alone.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_harness import JobDef, LocalService, RelayClient, WorkDef, build_workflow

from lsst.ctrl.bps.panda.local.event_service import SCAN_FACTOR, EventService

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayClient]:
    service = LocalService(str(tmp_path_factory.mktemp("panda-local")), workers=2)
    service.start()
    try:
        yield service.client()
    finally:
        service.stop()


def _es_workflow(name: str, works: list[WorkDef], es_task: str, label: str, max_events: int) -> Any:
    """Build a workflow and switch one work to the event service, the way
    iDDS does it when the plugin sends ``es=True``."""
    workflow = build_workflow(name, works)
    for work in workflow.template.works.values():
        if work.task_name == es_task:
            work.es, work.es_label, work.max_events_per_job = True, label, max_events
            work.dependency_map = work.dependency_map  # the setter builds es_files
            assert work.es_files
    return workflow


def _log_lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_payloads_share_panda_jobs_and_a_failure_is_retried_alone(
    client: RelayClient, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    once = tmp_path / "failed-once"
    # Payload a:eventservice_2^2 (order id 3) fails on its first run only.
    body = (
        f'echo "start ${{IN/L}} $PandaID" >> {log}; '
        f'if [ "${{IN/L}}" = "a:eventservice_2^2" ] && [ ! -e {once} ]; then touch {once}; exit 3; fi; '
        f'echo "end ${{IN/L}} $PandaID" >> {log}'
    )
    works = [
        WorkDef("es_01_a", body, tuple(JobDef(f"a:orderIdMap_{i}") for i in range(5)), max_attempt=2),
        WorkDef(
            "es_02_b",
            f'echo "start ${{IN/L}} $PandaID" >> {log}',
            (JobDef("b0", tuple(("es_01_a", f"a:orderIdMap_{i}") for i in range(5))),),
        ),
    ]
    request_id = client.result("submit", _es_workflow("es_wf", works, "es_01_a", "a", 2))
    assert client.wait(request_id) == "Finished"
    jobs = client.jobs(request_id)
    payloads = {name: jobs[f"a:orderIdMap_{i}"] for i, name in enumerate(
        ["0^1", "0^2", "2^1", "2^2", "4^1"])}  # fmt: skip
    # Each payload has its own content, finished.
    assert {row["status"] for row in payloads.values()} == {"Available"}
    # Its event-service file and place in it, as iDDS records them.
    assert [(row["path"], row["sub_map_id"]) for row in payloads.values()] == [
        ("a:eventservice_0", 0), ("a:eventservice_0", 1), ("a:eventservice_2", 0),
        ("a:eventservice_2", 1), ("a:eventservice_4", 0),
    ]  # fmt: skip
    assert (jobs["b0"]["path"], jobs["b0"]["sub_map_id"]) == (None, 0)
    assert [row["attempt_nr"] for row in payloads.values()] == [1, 1, 1, 2, 1]
    started: dict[str, list[str]] = defaultdict(list)
    for kind, event, panda_id in _log_lines(log)[:-1]:
        if kind == "start":
            started[event].append(panda_id)
    # Every payload ran once, the failed one twice; ${IN/L} is the event.
    assert {event: len(ids) for event, ids in started.items()} == {
        "a:eventservice_0^1": 1, "a:eventservice_0^2": 1, "a:eventservice_2^1": 1,
        "a:eventservice_2^2": 2, "a:eventservice_4^1": 1,
    }  # fmt: skip
    # Payloads of one event-service file ran in one PanDA job ...
    assert started["a:eventservice_0^1"] == started["a:eventservice_0^2"]
    assert started["a:eventservice_2^1"][0] == started["a:eventservice_2^2"][0]
    # ... one after another in the same slot.
    lines = [" ".join(line[:2]) for line in _log_lines(log)]
    assert lines.index("end a:eventservice_0^1") < lines.index("start a:eventservice_0^2")
    # The failed payload was retried alone, under a new PanDA id.
    retry_id = started["a:eventservice_2^2"][1]
    assert retry_id != started["a:eventservice_2^1"][0]
    assert sum(ids.count(retry_id) for ids in started.values()) == 1
    assert str(payloads["2^2"]["panda_id"]) == retry_id
    assert payloads["0^1"]["panda_id"] == payloads["0^2"]["panda_id"] != payloads["4^1"]["panda_id"]
    # The child ran after every payload (content counts are payloads: 5 + 1).
    assert jobs["b0"]["status"] == "Available"
    rows = client.result("get_requests", request_id=request_id, with_detail=True)
    assert [row["output_total_files"] for row in rows] == [5, 1]


def test_abort_skips_the_payloads_not_started(client: RelayClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    log = tmp_path / "log"
    body = f'echo "${{IN/L}}" >> {log}; while [ ! -e {gate} ]; do sleep 0.05; done'
    works = [WorkDef("ab_01_a", body, tuple(JobDef(f"a:orderIdMap_{i}") for i in range(3)))]
    request_id = client.result("submit", _es_workflow("ab_wf", works, "ab_01_a", "a", 3))
    for _ in range(200):
        if log.exists():
            break
        time.sleep(0.05)
    client.result("abort", request_id=request_id)
    assert client.wait(request_id) == "Cancelled"
    gate.touch()
    jobs = client.jobs(request_id)
    assert {row["status"] for row in jobs.values()} == {"Cancelled"}
    assert log.read_text().split() == ["a:eventservice_0^1"]


def test_kill_9_mid_event_service_job(tmp_path: Path) -> None:
    """After a crash the payloads that ended keep their result; the one cut
    short and the one never started run again (grouped again)."""
    service = LocalService(str(tmp_path / "state"), workers=1)
    service.start()
    log = tmp_path / "log"
    # The second payload sleeps through the crash on its first attempt.
    body = (
        f'echo "start ${{IN/L}}" >> {log}; '
        'if [ "${IN/L}" = "a:eventservice_0^2" ] && [ "$PanDA_AttemptNr" = 1 ]; then sleep 60; fi; '
        f'echo "end ${{IN/L}}" >> {log}'
    )
    works = [WorkDef("kc_01_a", body, tuple(JobDef(f"a:orderIdMap_{i}") for i in range(3)), max_attempt=2)]
    try:
        client = service.client()
        request_id = client.result("submit", _es_workflow("kc_wf", works, "kc_01_a", "a", 3))
        deadline = time.monotonic() + 60
        while "start a:eventservice_0^2" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "second payload never started"
            time.sleep(0.05)
        service.kill()
        service.port = int(client.exports["PANDA_URL"].rsplit(":", 1)[1].split("/", 1)[0])
        service.start()
        assert client.wait(request_id, timeout=120) == "Finished"
        jobs = client.jobs(request_id)
    finally:
        service.stop()
    assert {row["status"] for row in jobs.values()} == {"Available"}
    starts = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")]
    assert starts.count("a:eventservice_0^1") == 1  # ended before the crash: not rerun
    assert starts.count("a:eventservice_0^2") == 2
    assert starts.count("a:eventservice_0^3") == 1  # never started before the crash
    assert jobs["a:orderIdMap_1"]["panda_id"] == jobs["a:orderIdMap_2"]["panda_id"]
    assert jobs["a:orderIdMap_0"]["panda_id"] != jobs["a:orderIdMap_1"]["panda_id"]


def test_siblings_are_the_ready_payloads_of_the_same_file() -> None:
    es = EventService("a", 3, 10)  # files: order ids 10-12, 13-15, ...
    work = {1: 10, 2: 11, 3: 12, 4: 13, 5: 14, 6: None}  # job id -> order id (6: other work)
    ready = [6, 4, 2, 2, 5, 3, 1]
    assert es.siblings(1, ready, work.get, 3) == [2, 3]
    assert es.siblings(4, ready, work.get, 3) == [5]
    assert es.siblings(4, ready, work.get, 1) == []
    assert (es.group(13), es.event_name(14), es.content_fields(14)) == (
        1, "a:eventservice_13^2", {"path": "a:eventservice_13", "sub_map_id": 1},
    )  # fmt: skip
    # The search stops after SCAN_FACTOR * N candidates.
    far = [6] * (SCAN_FACTOR * 3) + [2]
    assert es.siblings(1, far, work.get, 3) == []
