# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Remote build end to end on the local PanDA service.

``bps submit`` with ``config/bps_remote.yaml`` packs the submit file into a
job archive, uploads it to the service's PanDA cache and submits a build
request; the build job (on this machine) downloads the archive, runs the
real bps build (quantum graph, transform, prepare) and sends the workflow
into the same request, whose payload jobs then run the demo pipeline. The
local service's remote-build ``runnerCommand`` (``remoteBuild`` section of
the submit file) runs this package's build decoder instead of setting up
an LSST stack from CVMFS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
BIN = Path(sys.executable).parent
DETECTORS = 2

LOCAL_REMOTE_BUILD = """
includeConfigs:
  - bps_demo.yaml
  - {remote}
remoteBuild:
  # Shipped with the submit file in the archive (the includes it needs).
  files: ["{work}/bps_demo.yaml", "{work}/bps_remote_local.yaml"]
  runnerCommand: >-
    python3 -m lsst.ctrl.bps.panda.edgenode.build_cmd_line_decoder
    _download_cmd_line_ _build_cmd_line_ _compute_site_
  numberOfRetries: 1
"""


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A rendered demo directory, a butler repo and a running local service."""
    work = tmp_path_factory.mktemp("remote-build")
    shutil.copy(DEMO / "pipeline.yaml", work)
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PANDA_BEHIND_REAL_LB="1",
        BPS_WMS_SERVICE_CLASS="lsst.ctrl.bps.panda.PanDAService",
        PIPELINE=str(work / "pipeline.yaml"),
        REPO=str(work / "repo"),
        SUBMIT=str(work / "submit"),
        DIST=str(work / "dist"),
        LOCAL_OVERLAY=str(ROOT / "config" / "bps_local.yaml"),
        CTRL_BPS_PANDA_RUN_INDEX=str(work / "runs.jsonl"),
    )
    template = string.Template((DEMO / "bps_demo.yaml.in").read_text())
    (work / "bps_demo.yaml").write_text(template.substitute(env))
    (work / "bps_remote_local.yaml").write_text(
        LOCAL_REMOTE_BUILD.format(remote=ROOT / "config" / "bps_remote.yaml", work=work)
    )
    _run([sys.executable, str(DEMO / "make_repo.py"), env["REPO"], env["PIPELINE"],
          "--detectors", str(DETECTORS)], env, work)  # fmt: skip
    state = work / "panda-local"
    _run([str(BIN / "panda-local"), "start", "--state-dir", str(state), "--port", "0"], env, work)
    try:
        exports = json.loads(
            _run([str(BIN / "panda-local"), "env", "--state-dir", str(state), "--json"], env, work)
        )
        env.update({key: str(value) for key, value in exports.items()})
        yield work, env
    finally:
        subprocess.run([str(BIN / "panda-local"), "stop", "--state-dir", str(state)], env=env, timeout=120)


def _submit_and_wait(work: Path, env: dict[str, str], submit_file: str) -> tuple[str, int, str]:
    out = _run([str(BIN / "bps"), "submit", submit_file], env, work)
    match = re.search(r"^Run Id: *(\S+)", out, re.MULTILINE)
    assert match, f"no Run Id in bps submit output:\n{out}"
    run_id = match.group(1)
    wait = subprocess.run(
        [sys.executable, str(DEMO / "wait_run.py"), run_id, "--timeout", "600", "--interval", "2"],
        env=env, cwd=work, capture_output=True, text=True, timeout=700,
    )  # fmt: skip
    assert wait.returncode in (0, 1), f"run {run_id} did not end:\n{wait.stdout}\n{wait.stderr}"
    return run_id, wait.returncode, out


def test_remote_build_runs_the_demo(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    run_id, status, out = _submit_and_wait(work, env, "bps_remote_local.yaml")
    report = _run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 0, report
    assert "Uploaded" in out and "remote build request" in out, out
    assert re.search(r"build_task(\s+\d+){8}\s+1\s+0", report), report
    for label in ("add1", "add2", "add3"):
        assert re.search(rf"{label}(\s+\d+){{8}}\s+{DETECTORS}\s+0", report), (label, report)
    _run([sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--detectors", str(DETECTORS)],
         env, work)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("pipelineYaml: {work}/no_such_pipeline.yaml", "no_such_pipeline.yaml"),
        ("payload:\n  inCollection: no/such/collection", "no/such/collection"),
    ],
)
def test_remote_build_errors_reach_bps_report(
    demo: tuple[Path, dict[str, str]], change: str, expected: str
) -> None:
    work, env = demo
    name = f"bad_{abs(hash(change))}.yaml"
    (work / name).write_text(f"includeConfigs:\n  - bps_remote_local.yaml\n{change.format(work=work)}\n")
    run_id, status, _ = _submit_and_wait(work, env, name)
    report = _run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 1, report
    assert re.search(r"build_task(\s+\d+){9}\s+1", report), report  # FAILED 1
    assert "Remote build failed" in report, report
    assert expected in report, report


def test_remote_build_splits_a_large_workflow(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    (work / "bps_split.yaml").write_text(
        "includeConfigs:\n  - bps_remote_local.yaml\nmaxRequestLength: 5000\n"
    )
    run_id, status, _ = _submit_and_wait(work, env, "bps_split.yaml")
    report = _run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 0, report
    build_logs = list((work / "panda-local" / "jobs" / run_id).rglob("payload.stdout"))
    assert any("Submitted step 1 of" in log.read_text() for log in build_logs), report
    for label in ("add1", "add2", "add3"):
        assert re.search(rf"{label}(\s+\d+){{8}}\s+{DETECTORS}\s+0", report), (label, report)
