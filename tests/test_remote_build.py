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

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_runs import BIN, DEMO, ROOT, demo_service, run, submit_and_wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A rendered demo directory, a butler repo and a running local service."""
    work = tmp_path_factory.mktemp("remote-build")
    (work / "bps_remote_local.yaml").write_text(
        LOCAL_REMOTE_BUILD.format(remote=ROOT / "config" / "bps_remote.yaml", work=work)
    )
    with demo_service(work, DETECTORS) as env:
        yield work, env


def test_remote_build_runs_the_demo(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    run_id, status, out = submit_and_wait(work, env, "bps_remote_local.yaml")
    report = run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 0, report
    assert "Uploaded" in out and "remote build request" in out, out
    assert re.search(r"build_task(\s+\d+){8}\s+1\s+0", report), report
    for label in ("add1", "add2", "add3"):
        assert re.search(rf"{label}(\s+\d+){{8}}\s+{DETECTORS}\s+0", report), (label, report)
    run([sys.executable, str(DEMO / "check_outputs.py"), env["REPO"], "--detectors", str(DETECTORS)],
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
    run_id, status, _ = submit_and_wait(work, env, name)
    report = run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 1, report
    assert re.search(r"build_task(\s+\d+){9}\s+1", report), report  # FAILED 1
    assert "Remote build failed" in report, report
    assert expected in report, report


def test_remote_build_splits_a_large_workflow(demo: tuple[Path, dict[str, str]]) -> None:
    work, env = demo
    (work / "bps_split.yaml").write_text(
        "includeConfigs:\n  - bps_remote_local.yaml\nmaxRequestLength: 5000\n"
    )
    run_id, status, _ = submit_and_wait(work, env, "bps_split.yaml")
    report = run([str(BIN / "bps"), "report", "--id", run_id], env, work)
    assert status == 0, report
    build_logs = list((work / "panda-local" / "jobs" / run_id).rglob("payload.stdout"))
    assert any("Submitted step 1 of" in log.read_text() for log in build_logs), report
    for label in ("add1", "add2", "add3"):
        assert re.search(rf"{label}(\s+\d+){{8}}\s+{DETECTORS}\s+0", report), (label, report)
