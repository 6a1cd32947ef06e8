# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The local PanDA service through the real panda-client iDDS API.

One ``panda-local`` daemon per module, on a free loopback port in a temporary
state directory, started and stopped by the fixture. Workflows are real idds
``Workflow`` objects of ``DomaPanDAWork`` with dependency maps; their bash
executables use ``${IN/L}`` and write markers that show what ran and when.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from idds.common.utils import json_dumps
from local_harness import (
    FINAL,
    JobDef,
    LocalService,
    RelayClient,
    WorkDef,
    build_workflow,
    log_cmd,
    logged_events,
)

pytestmark = pytest.mark.timeout(120)


def _chain(log: Path, n: int, fail: str = "", attempts: int = 1, final: bool = True) -> list[WorkDef]:
    """Three chained tasks of n jobs (a_i -> b_i -> c_i) and a final job."""
    fail_cmd = f'case "${{IN/L}}" in {fail}) exit 3;; esac;' if fail else ""
    works = [
        WorkDef("wf_01_a", log_cmd(log), tuple(JobDef(f"a{i}") for i in range(n))),
        WorkDef(
            "wf_02_b",
            log_cmd(log, fail_cmd),
            tuple(JobDef(f"b{i}", (("wf_01_a", f"a{i}"),)) for i in range(n)),
            max_attempt=attempts,
        ),
        WorkDef("wf_03_c", log_cmd(log), tuple(JobDef(f"c{i}", (("wf_02_b", f"b{i}"),)) for i in range(n))),
    ]
    if final:
        works.append(WorkDef("wf_04_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_03_c",)))
    return works


def _status_name(value: dict) -> str:
    return value["attributes"]["_name_"]


def _transform_statuses(client: RelayClient, request_id: int) -> dict[str, str]:
    rows = client.result("get_requests", request_id=request_id, with_detail=True)
    return {row["transform_name"]: _status_name(row["transform_status"]) for row in rows}


# ------------------------------------------------------------------ commands


def test_ping(client: RelayClient) -> None:
    before = dict(os.environ)
    assert client.call("ping") == (0, [True, {"Status": "OK"}])
    assert dict(os.environ) == before  # the client leaves the process environment alone


@pytest.mark.parametrize("command", ["suspend", "resume", "finish", "no_such_thing"])
def test_unknown_command(client: RelayClient, command: str) -> None:
    assert client.call(command, request_id=1) == (
        0,
        [False, f"{command} is not a command of iDDS ClientManager"],
    )


def test_abort_and_retry_of_unknown_request(client: RelayClient) -> None:
    no_match = [[-1, {"message": "No match requests", "status": -1}]]
    assert client.result("abort", request_id=99999) == no_match
    assert client.result("retry", request_id=99999) == no_match
    assert client.result("get_requests", request_id=99999, with_detail=True) == []


def test_get_requests_with_and_without_detail(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    gate = tmp_path / "gate"
    works = [
        WorkDef("wf_01_a", f"while [ ! -e {gate} ]; do sleep 0.05; done", (JobDef("a0"), JobDef("a1"))),
        WorkDef("wf_02_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_01_a",)),
    ]
    request_id = client.result("submit", build_workflow("wf_detail", works))
    assert isinstance(request_id, int) and request_id > 0
    plain = client.result("get_requests", request_id=request_id)
    assert len(plain) == 1
    assert plain[0]["request_id"] == request_id and plain[0]["name"] == "wf_detail"
    assert "transform_id" not in plain[0]
    assert _status_name(plain[0]["status"]) == "Transforming"
    detail = client.result("get_requests", request_id=request_id, with_detail=True)
    # The gated final work has no row until its condition fires.
    assert [row["transform_name"] for row in detail] == ["wf_01_a"]
    assert detail[0]["request_id"] == request_id
    assert detail[0]["output_total_files"] == 2
    assert _status_name(detail[0]["transform_status"]) == "Transforming"
    assert time.strptime(detail[0]["created_at"], "%a, %d %b %Y %H:%M:%S UTC")
    gate.touch()
    assert client.wait(request_id) == "Finished"
    detail = client.result("get_requests", request_id=request_id, with_detail=True)
    assert [row["transform_name"] for row in detail] == ["wf_01_a", "wf_02_final"]
    for row in detail:
        assert _status_name(row["transform_status"]) == "Finished"
        assert row["output_processed_files"] == row["output_total_files"]
        assert row["output_failed_files"] == row["output_missing_files"] == 0
    every = client.result("get_requests")
    assert request_id in [row["request_id"] for row in every]


def test_contents_output_ext_per_job(client: RelayClient, tmp_path: Path) -> None:
    works = [WorkDef("wf_01_x", 'case "${IN/L}" in x1) exit 7;; esac', (JobDef("x0"), JobDef("x1")), 2)]
    request_id = client.result("submit", build_workflow("wf_ext", works))
    assert client.wait(request_id) == "SubFinished"
    groups = client.result("get_contents_output_ext", request_id=request_id)
    assert len(groups) == 1
    (transform_id, rows) = next(iter(groups.items()))
    by_name = {row["name"]: row for row in rows}
    assert by_name["x0"]["status"] == "Available" and by_name["x0"]["job_status"] == "finished"
    assert by_name["x0"]["attempt_nr"] == 1 and by_name["x0"]["trans_exit_code"] == 0
    assert by_name["x1"]["status"] == "FinalFailed" and by_name["x1"]["job_status"] == "failed"
    assert by_name["x1"]["attempt_nr"] == 2 and by_name["x1"]["trans_exit_code"] == 7
    assert by_name["x1"]["max_attempt"] == 2
    assert by_name["x1"]["sub_map_id"] == by_name["x1"]["dep_sub_map_id"] == 0  # as iDDS has for DOMA works
    assert all(str(row["transform_id"]) == transform_id for row in rows)
    one = client.result("get_contents_output_ext", request_id=request_id, transform_id=int(transform_id))
    assert one == groups
    (row,) = client.result("get_requests", request_id=request_id, with_detail=True)
    task = client.result(
        "get_contents_output_ext", request_id=request_id, workload_id=row["transform_workload_id"]
    )
    assert task == groups
    assert client.result("get_contents_output_ext", request_id=request_id, workload_id=987654) == {}


def test_submit_split_into_steps(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    workflow = build_workflow("wf_steps", _chain(log, 20))
    size = len(json_dumps(workflow))
    steps = workflow.split_workflow_to_steps(request_cache=str(tmp_path / "cache"), max_request_length=200)
    assert len(steps) > 1
    assert len(json_dumps(workflow)) < size  # the maps now travel in the steps
    for step in steps:
        assert client.result("submit", step) == 0
    request_id = client.result("submit", workflow)
    assert request_id > 0
    assert client.wait(request_id) == "Finished"
    assert len([name for kind, name in logged_events(log) if kind == "end"]) == 3 * 20 + 1


def test_submit_of_broken_workflow_is_an_idds_error(client: RelayClient) -> None:
    works = [WorkDef("wf_01_a", "true", (JobDef("a0", (("wf_00_nope", "z"),)),))]
    result = client.result("submit", build_workflow("wf_broken", works))
    assert isinstance(result, list) and result[0] is False
    assert "unknown job" in result[1]


def test_classes_outside_idds_are_refused(service: LocalService) -> None:
    kwargs = json.dumps({"workflow": {"class": "Path", "module": "pathlib", "attributes": {}}})
    token = json.loads(Path(service.layout.token_file).read_text())["id_token"]
    reply = httpx.post(
        _relay_url(service),
        content=gzip.compress(
            json.dumps({"command_name": "submit", "kwargs": kwargs, "manager": True}).encode()
        ),
        headers={"Authorization": f"Bearer {token}"},
    )
    flag, message = json.loads(reply.text)
    assert flag is False
    assert message.startswith("failed to execute command with") and "pathlib" in message


# ---------------------------------------------------------------------- auth


def _relay_url(service: LocalService) -> str:
    return service.exports["PANDA_URL_SSL"] + "/relay_idds_command"


def _ping_body() -> bytes:
    return gzip.compress(json.dumps({"command_name": "ping", "manager": True}).encode())


def test_missing_token_is_refused_with_403(service: LocalService) -> None:
    reply = httpx.post(
        _relay_url(service), content=_ping_body(), headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 403
    assert reply.text.startswith("ERROR : Token authentication failed.")


def test_wrong_token_is_refused_through_panda_client(service: LocalService) -> None:
    exports = dict(service.exports, PANDA_AUTH_ID_TOKEN="eyJhbGciOiJub25lIn0.eyJleHAiOjF9.sig")
    status, text = RelayClient(exports).call("ping")
    assert "PANDA_AUTH_ID_TOKEN" not in os.environ
    assert status == 255
    assert text.startswith("ERROR : Token authentication failed.")


def test_non_gzip_body_is_a_500(service: LocalService) -> None:
    token = json.loads(Path(service.layout.token_file).read_text())["id_token"]
    reply = httpx.post(
        _relay_url(service), content=b'{"command_name": "ping"}', headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 500
    assert "Not a gzipped file" in reply.text


def test_token_file_and_env(service: LocalService) -> None:
    exports = service.exports
    for key in ("PANDA_URL", "PANDA_URL_SSL", "PANDA_BEHIND_REAL_LB", "PANDA_CONFIG_ROOT", "PANDA_AUTH_VO"):
        assert exports[key]
    assert exports["PANDA_AUTH"] == "oidc"
    assert exports["PANDA_URL"].startswith("http://127.0.0.1:")
    token_file = Path(exports["PANDA_CONFIG_ROOT"]) / ".token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    payload = json.loads(token_file.read_text())["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] > time.time() + 86400
    shell = subprocess.run(
        [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", "env", "--state-dir", service.layout.root],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"export PANDA_URL={exports['PANDA_URL']}" in shell
    assert "export PANDA_AUTH=oidc" in shell


def test_refuses_non_loopback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", "start", "--state-dir", str(tmp_path),
         "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "loopback" in proc.stderr
    assert not (tmp_path / "service.json").exists()


def test_status_command(service: LocalService) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", "status", "--json", "--state-dir",
         service.layout.root],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    info = json.loads(out)
    assert info["status"] == "up" and info["pid"] == service.pid


# ----------------------------------------------------------------- execution


def test_dependency_order_is_honoured(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    body = "sleep 0.05;"
    works = [
        WorkDef("wf_01_a", log_cmd(log, body), tuple(JobDef(f"a{i}") for i in range(4))),
        WorkDef(
            "wf_02_b",
            log_cmd(log, body),
            tuple(JobDef(f"b{i}", (("wf_01_a", f"a{i}"), ("wf_01_a", f"a{(i + 1) % 4}"))) for i in range(4)),
        ),
        WorkDef(
            "wf_03_c", log_cmd(log, body), (JobDef("c0", tuple(("wf_02_b", f"b{i}") for i in range(4))),)
        ),
        WorkDef("wf_04_final", log_cmd(log), (JobDef(FINAL),), final_of=("wf_03_c",)),
    ]
    request_id = client.result("submit", build_workflow("wf_order", works))
    assert client.wait(request_id) == "Finished"
    events = logged_events(log)
    position = {(kind, name): index for index, (kind, name) in enumerate(events)}
    assert len(events) == 2 * 10
    for work in works:
        for job in work.jobs:
            for _, parent in job.deps:
                assert position[("end", parent)] < position[("start", job.name)], (parent, job.name)
    assert all(position[("end", j)] < position[("start", FINAL)] for j in ("c0",))
    assert events[-1] == ("end", FINAL)


def test_retries_up_to_maxattempt(client: RelayClient, tmp_path: Path) -> None:
    # r0 fails on its first two attempts then succeeds; r1 always fails.
    body = f'echo $PanDA_AttemptNr >> {tmp_path}/${{IN/L}}.attempts; case "${{IN/L}}" in r1) exit 5;; ' \
        'r0) [ "$PanDA_AttemptNr" -ge 3 ] || exit 4;; esac'  # fmt: skip
    works = [WorkDef("wf_01_r", body, (JobDef("r0"), JobDef("r1")), max_attempt=3)]
    request_id = client.result("submit", build_workflow("wf_retry", works))
    assert client.wait(request_id) == "SubFinished"
    assert (tmp_path / "r0.attempts").read_text().split() == ["1", "2", "3"]
    assert (tmp_path / "r1.attempts").read_text().split() == ["1", "2", "3"]
    jobs = client.jobs(request_id)
    assert (jobs["r0"]["status"], jobs["r0"]["attempt_nr"], jobs["r0"]["trans_exit_code"]) == (
        "Available",
        3,
        0,
    )
    assert (jobs["r1"]["status"], jobs["r1"]["attempt_nr"], jobs["r1"]["trans_exit_code"]) == (
        "FinalFailed",
        3,
        5,
    )


def test_failure_makes_descendants_missing_and_final_still_runs(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    request_id = client.result("submit", build_workflow("wf_fail", _chain(log, 3, fail="b1", attempts=2)))
    assert client.wait(request_id) == "SubFinished"
    started = [name for kind, name in logged_events(log) if kind == "start"]
    assert started.count("b1") == 2  # retried once
    assert "c1" not in started  # its parent failed: never run
    assert {"c0", "c2", FINAL} <= set(started)
    jobs = client.jobs(request_id)
    assert jobs["b1"]["status"] == "FinalFailed" and jobs["b1"]["trans_exit_code"] == 3
    assert jobs["c1"]["status"] == "Missing" and jobs["c1"]["attempt_nr"] == 0
    assert jobs[FINAL]["status"] == "Available"
    assert _transform_statuses(client, request_id) == {
        "wf_01_a": "Finished", "wf_02_b": "SubFinished", "wf_03_c": "SubFinished", "wf_04_final": "Finished",
    }  # fmt: skip
    rows = {
        r["transform_name"]: r for r in client.result("get_requests", request_id=request_id, with_detail=True)
    }
    assert rows["wf_02_b"]["output_failed_files"] == 1 and rows["wf_02_b"]["output_processed_files"] == 2
    assert rows["wf_03_c"]["output_missing_files"] == 1 and rows["wf_03_c"]["output_processed_files"] == 2


def test_all_jobs_failing_is_failed(client: RelayClient) -> None:
    works = [WorkDef("wf_01_f", "exit 2", (JobDef("f0"), JobDef("f1")))]
    request_id = client.result("submit", build_workflow("wf_allfail", works))
    assert client.wait(request_id) == "Failed"
    assert _transform_statuses(client, request_id) == {"wf_01_f": "Failed"}


def test_abort_kills_running_jobs_and_cancels_the_rest(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    works = [
        WorkDef("wf_01_s", log_cmd(log, "sleep 60;"), (JobDef("s0"), JobDef("s1"), JobDef("s2"))),
        WorkDef("wf_02_t", log_cmd(log), (JobDef("t0", (("wf_01_s", "s0"),)),)),
    ]
    request_id = client.result("submit", build_workflow("wf_abort", works))
    deadline = time.monotonic() + 30
    while len(logged_events(log)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.request_status(request_id) == "Transforming"
    assert client.result("abort", request_id=request_id) == [
        [0, {"status": 0, "message": "Command registered successfully"}]
    ]
    assert client.wait(request_id, timeout=30) == "Cancelled"
    jobs = client.jobs(request_id)
    assert {row["status"] for row in jobs.values()} == {"Cancelled"}
    assert not [name for kind, name in logged_events(log) if kind == "end"]  # the sleepers were killed
    assert len([name for kind, name in logged_events(log) if kind == "start"]) == 2  # two workers
    assert _transform_statuses(client, request_id) == {"wf_01_s": "Cancelled", "wf_02_t": "Cancelled"}


def test_retry_reruns_failed_and_missing_jobs(client: RelayClient, tmp_path: Path) -> None:
    log = tmp_path / "log"
    flag = tmp_path / "broken"
    flag.touch()
    fail_cmd = f'if [ "${{IN/L}}" = b1 ] && [ -e {flag} ]; then exit 3; fi;'
    works = _chain(log, 3)
    works[1] = WorkDef(works[1].task_name, log_cmd(log, fail_cmd), works[1].jobs)
    request_id = client.result("submit", build_workflow("wf_rerun", works))
    assert client.wait(request_id) == "SubFinished"
    assert client.result("retry", request_id=request_id) == [
        [0, {"status": 0, "message": "Command registered successfully"}]
    ]
    # b1 fails again: the request ends again without c1.
    assert client.wait(request_id) == "SubFinished"
    flag.unlink()
    client.result("retry", request_id=request_id)
    assert client.wait(request_id) == "Finished"
    started = [name for kind, name in logged_events(log) if kind == "start"]
    assert started.count("b1") == 3
    assert started.count("c1") == 1
    assert started.count(FINAL) == 3  # the final job runs after each pass
    for name in ("a0", "a1", "a2", "b0", "b2", "c0", "c2"):
        assert started.count(name) == 1, name  # succeeded jobs are never rerun
    jobs = client.jobs(request_id)
    assert {row["status"] for row in jobs.values()} == {"Available"}
    assert jobs["b1"]["attempt_nr"] == 3


def test_status_and_stop_of_a_service_that_is_not_running(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli"]
    status = subprocess.run([*cli, "status", "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert status.returncode == 3
    assert "down" in status.stdout
    stop = subprocess.run([*cli, "stop", "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert stop.returncode == 0 and "not running" in stop.stdout
    env = subprocess.run([*cli, "env", "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert env.returncode != 0 and "panda-local start" in env.stderr
