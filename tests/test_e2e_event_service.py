# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""End to end with the event service: the demo pipeline through ``bps
submit`` -> plugin -> local PanDA service -> pipetask, with one label's
quanta run as event-service payloads (several per PanDA job).

Same set-up as ``test_e2e_demo.py`` (`demo_runs.demo_service`: its own
butler repo and service, all through separate processes as an operator would
run them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_runs import BIN, DEMO, FAILED_DETECTOR, demo_service, run, submit_and_wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DETECTORS = 3

# Per-payload content rows (with their PanDA ids) and the plugin's report.
_INSPECT = """
import json, sys
from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.idds_transport import transport_from_config
run_id = int(sys.argv[1])
reports, _ = PanDAService({}).report(wms_workflow_id=str(run_id), return_exit_codes=True)
transport = transport_from_config({})
payloads = []
for row in transport.get_requests(request_id=run_id, with_detail=True):
    if row.get("transform_id") is None:
        continue
    for items in transport.get_contents_output_ext(run_id, row["transform_workload_id"]).values():
        for item in items:
            payloads.append({"task": row["transform_name"], "name": item["name"], "map_id": item["map_id"],
                             "panda_id": item["panda_id"], "status": item["job_status"],
                             "content": item["status"], "attempt": item["attempt_nr"]})
report = reports[0]
print(json.dumps({
    "state": report.state.name, "total": report.total_number_jobs,
    "summary": {label: {s.name: n for s, n in counts.items() if n}
                for label, counts in (report.job_summary or {}).items()},
    "payloads": payloads,
}))
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A rendered demo directory, a butler repo and a running local service."""
    work = tmp_path_factory.mktemp("demo-es")
    with demo_service(work, DETECTORS) as env:
        yield work, env


def _inspect(work: Path, env: dict[str, str], run_id: str) -> dict:
    return json.loads(run([sys.executable, "-c", _INSPECT, run_id], env, work).strip().splitlines()[-1])


def _of_label(facts: dict, label: str) -> list[dict]:
    return sorted((p for p in facts["payloads"] if f"_{label}_" in p["task"]), key=lambda p: p["map_id"])


def test_event_service_label_runs_payloads_per_panda_job(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    (work / "bps_es.yaml").write_text(
        'includeConfigs:\n  - bps_demo.yaml\npayload:\n  payloadName: demo_es\nenableEventService: "add1:2"\n'
    )
    run_id, status, _ = submit_and_wait(work, env, "bps_es.yaml")
    facts = _inspect(work, env, run_id)
    assert status == 0, facts
    assert facts["state"] == "SUCCEEDED"
    # bps report counts payloads (3 quanta per detector, pipetaskInit, final
    # job), though the 3 add1 payloads ran in 2 PanDA jobs.
    n_payloads = 3 * DETECTORS + 2
    assert facts["total"] == n_payloads == len(facts["payloads"])
    assert facts["summary"]["add1"] == {"SUCCEEDED": DETECTORS}
    add1 = _of_label(facts, "add1")
    assert [p["name"] for p in add1] == [f"add1:orderIdMap_{i}" for i in range(DETECTORS)]
    assert all(p["status"] == "finished" and p["attempt"] == 1 for p in add1), add1
    assert add1[0]["panda_id"] == add1[1]["panda_id"] != add1[2]["panda_id"]
    panda_ids = {p["panda_id"] for p in facts["payloads"]}
    assert len(panda_ids) == n_payloads - 1
    report = run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert "SUCCEEDED" in report
    run(
        [sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--collection", "u/demo/demo_es",
         "--detectors", str(DETECTORS)],
        env,
        work,
    )  # fmt: skip


def test_failed_payload_retried_without_rerunning_siblings(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    retries = 2
    # add2 for detector FAILED_DETECTOR fails (bps_fail.yaml: its gain is
    # missing); add1 and add2 run as event-service payloads, 3 per PanDA job.
    # retryUnlessExit emptied: the failed payload's exit code 1 is retried.
    (work / "bps_es_fail.yaml").write_text(
        "includeConfigs:\n  - bps_fail.yaml\npayload:\n  payloadName: demo_es_fail\n"
        f'numberOfRetries: {retries}\nretryUnlessExit: []\nenableEventService: "add1:3,add2:3"\n'
    )
    run_id, status, _ = submit_and_wait(work, env, "bps_es_fail.yaml")
    facts = _inspect(work, env, run_id)
    assert status == 1, facts
    assert facts["state"] == "FAILED"
    add1, add2 = _of_label(facts, "add1"), _of_label(facts, "add2")
    assert len({p["panda_id"] for p in add1}) == 1, add1  # all of add1 in one PanDA job
    assert all(p["status"] == "finished" and p["attempt"] == 1 for p in add1), add1
    failed = [p for p in add2 if p["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempt"] == retries, add2
    # Its siblings ran once and succeeded: the retry reran none of them (it
    # may share a PanDA job with payloads on their first run).
    siblings = [p for p in add2 if p is not failed[0]]
    assert all(p["status"] == "finished" and p["attempt"] == 1 for p in siblings), add2
    with_retry = [p for p in facts["payloads"] if p["panda_id"] == failed[0]["panda_id"]]
    assert all(p["attempt"] == 1 for p in with_retry if p is not failed[0]), with_retry
    assert facts["summary"]["add2"] == {"SUCCEEDED": DETECTORS - 1, "FAILED": 1}
    run(
        [sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--collection", "u/demo/demo_es_fail",
         "--detectors", str(DETECTORS), "--failed-detector", str(FAILED_DETECTOR)],
        env,
        work,
    )  # fmt: skip
    # Fix the gain, `bps restart`: only the failed payload (and its pruned
    # child, and the final job) runs again; its siblings keep their attempt.
    gains = Path(env["REPO"]) / "detector_gains.txt"
    gains.write_text(gains.read_text().replace(f"{FAILED_DETECTOR} n/a", f"{FAILED_DETECTOR} 1.0"))
    run([str(BIN / "bps"), "restart", "--id", run_id], env, work)
    run(
        [sys.executable, str(DEMO / "wait_run.py"), run_id, "--timeout", "600", "--interval", "1"],
        env,
        work,
        timeout=700,
    )
    after = _inspect(work, env, run_id)
    assert after["state"] == "SUCCEEDED", after
    add1, add2 = _of_label(after, "add1"), _of_label(after, "add2")
    assert all(p["status"] == "finished" and p["attempt"] == 1 for p in add1), add1
    by_name = {p["name"]: p for p in add2}
    assert by_name[failed[0]["name"]]["attempt"] == retries + 1
    assert all(by_name[p["name"]]["attempt"] == 1 for p in siblings), add2
    assert after["summary"]["add2"] == {"SUCCEEDED": DETECTORS}
