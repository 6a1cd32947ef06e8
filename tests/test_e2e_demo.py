# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""End to end: a real AddTask pipeline through ``bps submit`` -> plugin ->
local PanDA service -> pipetask, with the outputs checked in the butler.

Every step runs as a separate process, exactly as an operator would run it:
``panda-local``, ``bps submit``, ``bps report``, and the demo's own helper
scripts. The service is started on a free loopback port by the fixture and
stopped by it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_runs import BIN, DEMO, FAILED_DETECTOR, ROOT, demo_service, run, submit_and_wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DETECTORS = 3

# Runs in a fresh interpreter with the service's environment: per-job
# states, attempts and exit codes straight from the service, plus the
# plugin's own report of the run.
_INSPECT = """
import json, sys
from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.idds_transport import transport_from_config
run_id = sys.argv[1]
service = PanDAService({})
reports, message = service.report(wms_workflow_id=run_id, return_exit_codes=True)
report = reports[0]
transport = transport_from_config({})
rows = transport.get_requests(request_id=int(run_id), with_detail=True)
jobs = []
for row in rows:
    tid = row.get("transform_id")
    if tid is None:
        continue
    for items in transport.get_contents_output_ext(int(run_id), row.get("transform_workload_id")).values():
        for item in items:
            jobs.append({"task": row["transform_name"], "name": item.get("name"),
                         "status": item.get("job_status"), "content": item.get("status"),
                         "attempt": item.get("attempt_nr"),
                         "exit": item.get("trans_exit_code")})
print(json.dumps({
    "state": report.state.name,
    "request_status": rows[0]["status"]["attributes"]["_name_"],
    "total": report.total_number_jobs,
    "summary": {label: {s.name: n for s, n in counts.items() if n}
                for label, counts in (report.job_summary or {}).items()},
    "exit_codes": report.exit_code_summary,
    "jobs": jobs,
}))
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A rendered demo directory, a butler repo and a running local service."""
    work = tmp_path_factory.mktemp("demo")
    with demo_service(work, DETECTORS) as env:
        yield work, env


def _inspect(work: Path, env: dict[str, str], run_id: str) -> dict:
    """Per-job facts and the plugin's report of a run, from a fresh process."""
    return json.loads(run([sys.executable, "-c", _INSPECT, run_id], env, work).strip().splitlines()[-1])


def test_demo_pipeline_succeeds_and_writes_outputs(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    run_id, status, _ = submit_and_wait(work, env, "bps_demo.yaml")
    facts = _inspect(work, env, run_id)
    assert status == 0, facts
    assert facts["state"] == "SUCCEEDED"
    assert facts["request_status"] == "Finished"
    n_jobs = 3 * DETECTORS + 2  # three quanta per detector, pipetaskInit and the final job
    assert facts["total"] == n_jobs
    assert len(facts["jobs"]) == n_jobs
    assert all(job["exit"] in (0, None) and job["status"] == "finished" for job in facts["jobs"]), facts[
        "jobs"
    ]
    for label, counts in facts["summary"].items():
        assert set(counts) == {"SUCCEEDED"}, (label, counts)
    report = run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert "SUCCEEDED" in report
    run(
        [sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--detectors", str(DETECTORS)],
        env,
        work,
    )


def test_second_submit_into_same_repo(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    run_id, status, _ = submit_and_wait(work, env, "bps_demo.yaml")
    assert status == 0, _inspect(work, env, run_id)
    run(
        [sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--detectors", str(DETECTORS)],
        env,
        work,
    )


def test_failing_quantum_is_not_retried_and_final_job_still_runs(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    retries = 2
    (work / "bps_fail_retries.yaml").write_text(
        f"includeConfigs:\n  - bps_fail.yaml\nnumberOfRetries: {retries}\n"
    )
    run_id, status, _ = submit_and_wait(work, env, "bps_fail_retries.yaml")
    facts = _inspect(work, env, run_id)
    assert status == 1, facts
    assert facts["state"] == "FAILED"
    assert facts["request_status"] == "SubFinished"
    jobs = facts["jobs"]
    failed = [job for job in jobs if job["status"] == "failed"]
    assert len(failed) == 1, jobs
    assert failed[0]["exit"] == 1
    # A failed quantum exits 1, in ctrl_bps' retryUnlessExit [1, 2]: no retry.
    assert failed[0]["attempt"] == 1, failed[0]
    # The failed quantum's only descendant never ran: its content is Missing.
    never_ran = [job for job in jobs if job["content"] == "Missing"]
    assert len(never_ran) == 1 and never_ran[0]["attempt"] == 0 and never_ran[0]["status"] is None, jobs
    final = [job for job in jobs if "finalJob" in (job["task"] or "") or "final" in (job["name"] or "")]
    assert final and all(job["status"] == "finished" for job in final), jobs
    assert facts["exit_codes"], facts
    assert any(1 in codes for codes in facts["exit_codes"].values()), facts["exit_codes"]
    run(
        [
            sys.executable,
            str(DEMO / "check_outputs.py"),
            env["REPO"],
            "--collection",
            "u/demo/demo_fail",
            "--detectors",
            str(DETECTORS),
            "--failed-detector",
            str(FAILED_DETECTOR),
        ],
        env,
        work,
    )


def _walkthrough() -> str:
    """The README walkthrough's bash block, as written."""
    text = (ROOT / "README.md").read_text()
    marker = text.index("<!-- walkthrough")
    block = re.search(r"```bash\n(.*?)```", text[marker:], re.DOTALL)
    assert block, "README walkthrough block not found"
    return block.group(1)


def test_readme_walkthrough_fail_find_fix_restart_succeed(tmp_path: Path) -> None:
    """Run the README walkthrough literally, in a fresh home directory."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA_", "BPS_", "CTRL_BPS_PANDA"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PANDA_BEHIND_REAL_LB="1")
    script = "set -euo pipefail\n" + _walkthrough()
    try:
        proc = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=840
        )
    finally:
        state = home / ".lsst" / "panda-local"
        subprocess.run([str(BIN / "panda-local"), "stop", "--state-dir", str(state)], env=env, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr}"
    run_id = re.search(r"^run (\d+) failed$", out, re.MULTILINE)
    assert run_id, out
    request = run_id.group(1)
    # watch ends with the failure; report names the failed job's PanDA id.
    assert re.search(rf"^run {request} ended SubFinished \(1 failed job\(s\)\)", out, re.MULTILINE), out
    assert re.search(r"^Failed job \S+_add2_2 \(add2\): PanDA job id \d+, exit code 1", out, re.MULTILINE), (
        out
    )
    # jobs --state failed: the failed quantum only, run once (retryUnlessExit).
    failed = [line.split("\t") for line in out.splitlines() if "\tFAILED\t" in line]
    assert len({row[1] for row in failed}) == 1 and failed[0][0] == "add2", failed
    assert failed[0][1].endswith("_add2_2") and failed[0][3:5] == ["1", "1"], failed
    assert f"/jobs/{request}/add2/{failed[0][1]}/attempt_1/payload.stderr" in failed[0][5]
    assert "ValueError: Detector 2 has no usable gain" in out, out
    lines = out.splitlines()
    assert lines.index(f"run {request} SUCCEEDED") > lines.index(f"run {request} failed"), out
    log = (home / ".lsst" / "panda-local" / "panda-local.log").read_text()
    assert f"Request {request} restarted" in log and f"Request {request} ended Finished" in log
    repo = home / "panda-demo" / "repo"
    run([sys.executable, str(DEMO / "check_outputs.py"), str(repo), "--collection", "u/demo/demo_fail",
          "--detectors", str(DETECTORS)], env, tmp_path)  # fmt: skip
