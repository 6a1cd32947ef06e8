# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Operator commands of the local service: ``panda-local env|jobs|watch|
monitor``, ``retryUnlessExit``, job log directories and ``panda-local.log``.

One daemon per module on a free loopback port; every command runs as the
``panda-local`` executable of this environment, as an operator runs it.
"""

from __future__ import annotations

import os
import pty
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from local_harness import FINAL, JobDef, LocalService, RelayClient, WorkDef, build_workflow

pytestmark = pytest.mark.timeout(180)

PANDA_LOCAL = str(Path(sys.executable).parent / "panda-local")


def _job(uuid: str, label: str, detector: int) -> str:
    """A pseudo input name as the plugin makes it for a quantum."""
    return f"{uuid}_{label}_{detector}+qgraphNodeId:{uuid}+qgraphId:"


def _cli(
    service: LocalService, *args: str, check: bool = True, cwd: str | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [PANDA_LOCAL, *args, "--state-dir", service.layout.root],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"panda-local {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# add for detector 2 fails like a quantum (exit 1, in retryUnlessExit); add for
# detector 3 fails with exit 3 (not listed: retried up to maxAttempt 2).
_ADD = (
    'case "${IN/L}" in '
    "*_add_2+*) echo 'ValueError: detector 2 has no calibration' >&2; exit 1;; "
    "*_add_3+*) echo 'flaky disk' >&2; exit 3;; "
    "esac; echo ok"
)


@pytest.fixture(scope="module")
def failed_run(client: RelayClient) -> int:
    """A finished run with two failed jobs (one never retried)."""
    init = JobDef("pipetaskInit+qgraphNodeId:+qgraphId:")
    adds = tuple(JobDef(_job(f"u{d}", "add", d), (("run7_01_pipetaskInit_01", init.name),)) for d in range(4))
    works = [
        WorkDef("run7_01_pipetaskInit_01", "echo init", (init,), retry_unless_exit=(1, 2)),
        WorkDef("run7_02_add_01", _ADD, adds, max_attempt=2, retry_unless_exit=(1, 2)),
        WorkDef("run7_03_finalJob_01", "echo final", (JobDef(FINAL),), final_of=("run7_02_add_01",)),
    ]
    request_id = client.result("submit", build_workflow("run7", works))
    assert client.wait(request_id, timeout=120) == "SubFinished"
    return request_id


def test_env_exports_the_wms_class_and_the_checkout(service: LocalService, tmp_path: Path) -> None:
    out = _cli(service, "env", cwd=str(tmp_path)).stdout
    assert "export BPS_WMS_SERVICE_CLASS=lsst.ctrl.bps.panda.PanDAService\n" in out
    exports = dict(line[len("export ") :].split("=", 1) for line in out.splitlines())
    overlay = Path(shlex.split(exports["CTRL_BPS_PANDA_DIR"])[0]) / "config" / "bps_local.yaml"
    assert overlay.is_file()


def test_retry_unless_exit_ends_a_job_after_one_attempt(client: RelayClient, failed_run: int) -> None:
    jobs = client.jobs(failed_run)
    listed = jobs[_job("u2", "add", 2)]
    assert (listed["status"], listed["attempt_nr"], listed["trans_exit_code"]) == ("FinalFailed", 1, 1)
    other = jobs[_job("u3", "add", 3)]
    assert (other["status"], other["attempt_nr"], other["trans_exit_code"]) == ("FinalFailed", 2, 3)
    assert jobs[FINAL]["status"] == "Available"


def test_jobs_lists_exactly_the_failed_jobs(service: LocalService, failed_run: int) -> None:
    out = _cli(service, "jobs", str(failed_run), "--state", "failed").stdout.splitlines()
    assert out[0].split("\t") == ["LABEL", "JOB", "STATE", "ATTEMPTS", "EXIT", "STDERR"]
    rows = [line.split("\t") for line in out[1:]]
    assert [row[:5] for row in rows] == [
        ["add", "u2_add_2", "FAILED", "1", "1"],
        ["add", "u3_add_3", "FAILED", "2", "3"],
    ]
    stderr = Path(rows[0][5])
    assert "ValueError: detector 2 has no calibration" in stderr.read_text()
    # Readable without the tool: jobs/<run>/<label>/<bps name>/attempt_<n>.
    root = Path(service.layout.root)
    assert stderr == root / "jobs" / str(failed_run) / "add" / "u2_add_2" / "attempt_1" / "payload.stderr"
    assert (root / "jobs" / str(failed_run) / "add" / "u3_add_3" / "attempt_2" / "payload.stderr").is_file()


def test_jobs_filters_by_label_and_state(service: LocalService, failed_run: int) -> None:
    everything = _cli(service, "jobs", str(failed_run)).stdout.splitlines()[1:]
    assert len(everything) == 6
    adds = _cli(service, "jobs", str(failed_run), "--label", "add").stdout.splitlines()[1:]
    assert {line.split("\t")[1] for line in adds} == {f"u{d}_add_{d}" for d in range(4)}
    both = _cli(service, "jobs", str(failed_run), "--state", "FAILED", "--state", "succeeded").stdout
    assert len(both.splitlines()) == 1 + 6
    final = [line.split("\t") for line in everything if line.startswith("finalJob\t")]
    assert final == [["finalJob", "pure_pseudoinput", "SUCCEEDED", "1", "0", final[0][5]]]


def test_jobs_of_an_unknown_run_is_a_clear_error(service: LocalService) -> None:
    proc = _cli(service, "jobs", "999999", check=False)
    assert proc.returncode != 0
    assert "No run 999999" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_watch_follows_a_run_until_it_succeeds(
    service: LocalService, client: RelayClient, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    gate = f"while [ ! -e {go} ]; do sleep 0.05; done"
    works = [WorkDef("run8_01_gated_01", gate, tuple(JobDef(f"s{i}") for i in range(4)))]
    request_id = client.result("submit", build_workflow("run8", works))
    argv = [PANDA_LOCAL, "watch", str(request_id), "--interval", "0.2", "--state-dir", service.layout.root]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        go.touch()
        rest, errors = proc.communicate(timeout=120)
    assert proc.returncode == 0, first + rest + errors
    lines = [first.rstrip("\n"), *rest.splitlines()]
    progress = [line for line in lines if f"run {request_id} " in line and "/4 " in line]
    assert "Transforming" in progress[0] and "0/4 RUNNING 2, READY 2" in progress[0], lines
    assert len(progress) >= 2, lines  # one line per change, not one per poll
    assert len({line.split("] ", 1)[1].split(" ", 3)[3] for line in progress}) == len(progress), lines
    assert "Finished" in progress[-1] and "4/4 SUCCEEDED 4" in progress[-1]
    assert "[" not in progress[-1].split("] ", 1)[1]  # no bar when not on a terminal
    assert lines[-1] == f"run {request_id} SUCCEEDED"


def test_watch_of_a_failed_run_exits_1(service: LocalService, failed_run: int) -> None:
    proc = _cli(service, "watch", str(failed_run), check=False)
    assert proc.returncode == 1
    assert "SUCCEEDED 4, FAILED 2" in proc.stdout
    assert f"panda-local jobs {failed_run} --state failed" in proc.stdout


def test_watch_draws_a_bar_on_a_terminal(service: LocalService, failed_run: int) -> None:
    master, slave = pty.openpty()
    try:
        argv = [PANDA_LOCAL, "watch", str(failed_run), "--state-dir", service.layout.root]
        proc = subprocess.run(argv, stdout=slave, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the terminal's other side is closed and drained
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = b"".join(chunks).decode()
    assert proc.returncode == 1
    assert f"run {failed_run} SubFinished" in out and f"[{'#' * 30}] 6/6 SUCCEEDED 4, FAILED 2" in out, out


def test_log_has_a_line_per_failure_retry_abort_restart_and_end(
    service: LocalService, client: RelayClient, failed_run: int
) -> None:
    works = [WorkDef("run9_01_sleep_01", "sleep 60", (JobDef("z0"),))]
    request_id = client.result("submit", build_workflow("run9", works))
    deadline = time.monotonic() + 60
    while client.jobs(request_id)["z0"]["status"] != "Processing" and time.monotonic() < deadline:
        time.sleep(0.1)
    client.result("abort", request_id=request_id)
    client.wait(request_id)
    client.result("retry", request_id=failed_run)
    client.wait(failed_run, timeout=120)
    log = (Path(service.layout.log_file)).read_text().splitlines()
    about = [line for line in log if f"Request {failed_run} " in line]
    stderr_u2 = os.path.join("add", "u2_add_2", "attempt_1", "payload.stderr")
    assert any("job u2_add_2 attempt 1 exited 1: failed for good (exit code in retryUnlessExit" in line
               and line.endswith(stderr_u2) for line in about), about  # fmt: skip
    assert any("job u3_add_3 attempt 1 exited 3: will be retried" in line for line in about), about
    assert any(
        "job u3_add_3 attempt 2 exited 3: failed for good (no attempts left)" in line for line in about
    )
    assert any("restarted: 2 failed, missing or cancelled job(s)" in line for line in about), about
    ends = [line for line in about if "ended SubFinished" in line]
    assert len(ends) == 2 and "4 Available, 2 FinalFailed" in ends[0], about
    assert any(f"Request {request_id} aborted: 1 running job(s) killed" in line for line in log)
    assert any(f"Request {request_id} ended Cancelled" in line for line in log)


def test_monitor_needs_the_token(service: LocalService, failed_run: int) -> None:
    url = _cli(service, "monitor").stdout.strip()
    assert url.startswith("http://127.0.0.1:") and "/panda-local/monitor?token=" in url
    base = url.split("?", 1)[0]
    with httpx.Client(trust_env=False) as http:
        assert http.get(base).status_code == 403
        assert http.get(f"{base}/{failed_run}").status_code == 403
        assert http.get(base.replace("monitor", "api/runs")).status_code == 403
        first = http.get(url, follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/panda-local/monitor"
        page = http.get(f"{base}/{failed_run}")  # the cookie set by the redirect
    assert page.status_code == 200
    assert "ValueError: detector 2 has no calibration" in page.text
