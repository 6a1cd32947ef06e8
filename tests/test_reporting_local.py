"""Reports and run control of runs on the local PanDA service.

One ``panda-local`` daemon for the module (loopback, free port, temporary
state directory), reached through the real transport and panda-client.
Runs: succeeded, partly failed, restarted, running then cancelled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from local_harness import FINAL, JobDef, LocalService, WorkDef, build_workflow

from lsst.ctrl.bps import WmsRunReport, WmsStates
from lsst.ctrl.bps.panda import run_control
from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport
from lsst.ctrl.bps.panda.reporting import build_run_reports
from lsst.ctrl.bps.panda.request_encoding import encode_workflow
from lsst.ctrl.bps.panda.submit_record import SubmitRecord, TaskRecord

pytestmark = pytest.mark.timeout(180)

S = WmsStates


@pytest.fixture(scope="module")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the module's service; yield its client environment."""
    with LocalService(str(tmp_path_factory.mktemp("panda-local")), workers=3) as svc:
        yield svc.exports


@pytest.fixture
def transport(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PanDARelayTransport:
    for key in ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN", "OIDC_AUTH_VO"):
        monkeypatch.delenv(key, raising=False)
    for key, value in service_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))
    return PanDARelayTransport()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what}")


def wait_done(transport: PanDARelayTransport, request_id: int) -> WmsStates:
    ended = (S.SUCCEEDED, S.FAILED, S.DELETED)
    wait_for(lambda: run_control.get_status(transport, str(request_id))[0] in ended, f"run {request_id}")
    return run_control.get_status(transport, str(request_id))[0]


def submit(transport: PanDARelayTransport, tmp_path: Path, name: str, body: str) -> tuple[int, Path]:
    """Submit a 2 x 2 chain (labels ``step_1_isr``, ``consolidate_2``) and a
    final job; ``body`` runs in the second task's jobs."""
    works = [
        WorkDef(f"{name}_01_step_1_isr_01", "true ${IN/L}", (JobDef("isr0"), JobDef("isr1"))),
        WorkDef(
            f"{name}_02_consolidate_2_01",
            body,
            (
                JobDef("co0", ((f"{name}_01_step_1_isr_01", "isr0"),)),
                JobDef("co1", ((f"{name}_01_step_1_isr_01", "isr1"),)),
            ),
        ),
        WorkDef(
            f"{name}_03_finalJob_01", "true", (JobDef(FINAL),), final_of=(f"{name}_02_consolidate_2_01",)
        ),
    ]
    request_id = transport.submit(
        encode_workflow(build_workflow(name, works), 10**8), request_cache=str(tmp_path)
    )
    submit_dir = tmp_path / name
    submit_dir.mkdir()
    record = SubmitRecord(
        name,
        str(submit_dir),
        {
            f"{name}_01_step_1_isr_01": TaskRecord("step_1_isr", 2),
            f"{name}_02_consolidate_2_01": TaskRecord("consolidate_2", 2),
            f"{name}_03_finalJob_01": TaskRecord("finalJob", 1),
        },
        request_id,
        {"operator": "tester", "site": "LOCAL"},
    )
    record.write()
    record.register()
    return request_id, submit_dir


def one_report(transport: PanDARelayTransport, wms_id: object, exit_codes: bool = False) -> WmsRunReport:
    reports, message = build_run_reports(transport, str(wms_id), None, 2, exit_codes)
    assert message == ""
    assert len(reports) == 1
    report = reports[0]
    for counts in report.job_summary.values():
        assert all(n >= 0 for n in counts.values())
    assert report.total_number_jobs == 5
    return report


def nonzero(counts: dict[WmsStates, int]) -> dict[WmsStates, int]:
    return {state: n for state, n in counts.items() if n}


def test_succeeded_run(transport: PanDARelayTransport, tmp_path: Path) -> None:
    request_id, submit_dir = submit(transport, tmp_path, "ok", "true ${IN/L}")
    assert wait_done(transport, request_id) is S.SUCCEEDED
    report = one_report(transport, submit_dir, exit_codes=True)
    assert report.state is S.SUCCEEDED
    assert (report.wms_id, report.path, report.operator) == (str(request_id), str(submit_dir), "tester")
    assert report.run_summary == "step_1_isr:2;consolidate_2:2;finalJob:1"
    assert report.job_state_counts[S.SUCCEEDED] == 5
    assert report.exit_code_summary == {"step_1_isr": [], "consolidate_2": [], "finalJob": []}
    assert sorted(job.name for job in report.jobs) == sorted(
        ["isr0", "isr1", "co0", "co1", "pure_pseudoinput"]
    )
    logs = Path(report.specific_info.context["job_logs"])
    assert logs.is_dir()
    ok, message = run_control.cancel(transport, str(request_id))
    assert not ok and "already ended" in message
    assert run_control.restart(transport, str(request_id))[0] is None


def test_partly_failed_then_restarted_run(transport: PanDARelayTransport, tmp_path: Path) -> None:
    marker = tmp_path / "second-try"
    body = f'if [ "${{IN/L}}" = co1 ] && [ ! -e {marker} ]; then exit 3; fi'
    request_id, submit_dir = submit(transport, tmp_path, "part", body)
    assert wait_done(transport, request_id) is S.FAILED
    report = one_report(transport, request_id, exit_codes=True)
    assert report.path == str(submit_dir)
    assert report.state is S.FAILED
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 2}
    assert nonzero(report.job_summary["consolidate_2"]) == {S.SUCCEEDED: 1, S.FAILED: 1}
    assert report.exit_code_summary["consolidate_2"] == [3]
    failed = [job for job in report.jobs if job.state is S.FAILED]
    assert [(job.name, job.label, job.attempts, job.exit_code) for job in failed] == [
        ("co1", "consolidate_2", 1, 3)
    ]
    assert run_control.get_status(transport, str(request_id)) == (S.FAILED, "")

    marker.touch()
    run_id, run_name, message = run_control.restart(transport, str(submit_dir))
    assert (run_id, run_name) == (str(request_id), "part"), message
    assert wait_done(transport, request_id) is S.SUCCEEDED
    report = one_report(transport, submit_dir, exit_codes=True)
    assert report.job_state_counts[S.SUCCEEDED] == 5
    (retried,) = [job for job in report.jobs if job.name == "co1"]
    assert retried.attempts == 2 and retried.state is S.SUCCEEDED


def test_running_then_cancelled_run(transport: PanDARelayTransport, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    request_id, _ = submit(transport, tmp_path, "cancel", f"while [ ! -e {gate} ]; do sleep 0.1; done")

    def running() -> bool:
        return one_report(transport, request_id).job_summary["consolidate_2"][S.RUNNING] == 2

    wait_for(running, "two running jobs")
    report = one_report(transport, request_id)
    assert report.state is S.RUNNING
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 2}
    assert nonzero(report.job_summary["finalJob"]) == {S.UNREADY: 1}  # gated: no row yet
    owner = transport.get_requests(request_id)[0]["username"]
    ids = run_control.list_submitted(transport, None, owner)
    assert str(request_id) in ids

    ok, message = run_control.cancel(transport, str(request_id))
    assert ok, message
    assert wait_done(transport, request_id) is S.DELETED
    report = one_report(transport, request_id)
    assert report.state is S.DELETED
    assert nonzero(report.job_summary["consolidate_2"]) == {S.DELETED: 2}
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 2}
    gate.touch()


def test_summary_and_ping(transport: PanDARelayTransport, tmp_path: Path) -> None:
    assert run_control.ping(transport) == (0, None)
    run_control.submission_checks(transport)
    reports, message = build_run_reports(transport, None, None, 1, False)
    assert message == ""
    assert reports and all(r.wms_id and r.state for r in reports)
    reports, message = build_run_reports(transport, "999999", None, 1, False)
    assert reports == [] and "'999999'" in message
    assert run_control.cancel(transport, "999999")[0] is False


def bps(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``bps`` command with the PanDA service class."""
    argv = [str(Path(sys.executable).parent / "bps"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.e2e
def test_bps_commands(transport: PanDARelayTransport, tmp_path: Path) -> None:
    env = dict(os.environ, BPS_WMS_SERVICE_CLASS="lsst.ctrl.bps.panda.PanDAService")
    body = 'if [ "${IN/L}" = co1 ]; then exit 5; fi'
    request_id, submit_dir = submit(transport, tmp_path, "cmd", body)
    assert wait_done(transport, request_id) is S.FAILED

    result = bps(env, "status", "--id", str(request_id))
    assert result.returncode == S.FAILED.value, result.stderr

    result = bps(env, "report", "--id", str(submit_dir), "--return-exit-codes")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "FAILED" in out and str(request_id) in out and f"Path: {submit_dir}" in out
    for label in ("step_1_isr", "consolidate_2", "finalJob"):
        assert label in out
    assert "PanDA task ids" in out and "Job logs" in out
    assert "WARNING" not in out  # job summary, exit codes and order all present
    (codes_line,) = [line for line in out.splitlines() if line.startswith("consolidate_2") and "None" in line]
    assert " 5" in codes_line  # infrastructure-class code 5 listed

    result = bps(env, "report", "--hist", "1")
    assert result.returncode == 0 and "cmd" in result.stdout, result.stderr

    result = bps(env, "restart", "--id", str(request_id))
    assert f"Run Id: {request_id}" in result.stdout and "Run Name: cmd" in result.stdout, result.stderr
    wait_done(transport, request_id)
    result = bps(env, "restart", "--id", "123456")
    assert "Restart failed" in result.stdout and "'123456'" in result.stdout

    result = bps(env, "cancel", "--id", str(request_id))
    assert "already ended" in result.stdout or "Couldn't cancel" in result.stdout, result.stdout
    result = bps(env, "cancel")
    assert "No job matches" in result.stdout

    result = bps(env, "ping")
    assert result.returncode == 0, result.stderr
    assert "Ping successful" in result.stderr
