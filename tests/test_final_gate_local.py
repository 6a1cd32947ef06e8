# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The final job starts only after every other job has ended, on the local
PanDA service, through ``PanDAService.prepare`` and ``submit``.

The workflow (`prepare_helpers.split_label_workflow`) has a label whose
jobs partly feed another label and partly end their branch; one of the
latter sleeps for seconds while every other job ends at once. A final job
gated only on the works nobody depends on would start during that sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_harness import LocalService
from prepare_helpers import make_config, split_label_workflow

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import PanDAService, run_control

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
SLOW = "4"


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local service of this test's own; its client environment set."""
    service = LocalService(str(tmp_path / "state"), workers=3)
    service.start()
    try:
        for key in ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN", "OIDC_AUTH_VO"):
            monkeypatch.delenv(key, raising=False)
        for key, value in service.exports.items():
            monkeypatch.setenv(key, value)
        yield
    finally:
        service.stop()


def _events(log: Path) -> dict[str, float]:
    """Read the jobs' log: ``start <id>``/``end <id>``/``final`` -> time."""
    found = {}
    for line in log.read_text().splitlines():
        *key, stamp = line.split()
        found[" ".join(key)] = float(stamp)
    return found


def test_final_job_starts_after_the_slow_childless_job(tmp_path: Path, service_env: None) -> None:
    """``s5`` shares its work with jobs that feed ``child``, so that work
    is not a sink work (the case the narrower gate got wrong)."""
    log = tmp_path / "events.log"
    workflow = split_label_workflow(str(log), slow=SLOW)
    config = make_config(
        tmp_path,
        f"includeConfigs:\n  - {ROOT / 'config' / 'bps_local.yaml'}\n",
        computeSite="LOCAL",
        fileDistributionEndPoint=f"file://{tmp_path}/dist/",
    )
    service = PanDAService(config)
    prepared = service.prepare(config, workflow, str(tmp_path / "submit"))
    service.submit(prepared)
    deadline = time.monotonic() + 240
    state = WmsStates.UNKNOWN
    while time.monotonic() < deadline:
        state, _ = run_control.get_status(service.transport, prepared.run_id)
        if state in (WmsStates.SUCCEEDED, WmsStates.FAILED, WmsStates.DELETED):
            break
        time.sleep(0.5)
    assert state == WmsStates.SUCCEEDED
    events = _events(log)
    assert len([key for key in events if key.startswith("end ")]) == 9
    assert events[f"end {SLOW}"] - events[f"start {SLOW}"] >= float(SLOW)
    assert events["final"] > events[f"end {SLOW}"]
    others = [t for key, t in events.items() if key.startswith("end ") and key != f"end {SLOW}"]
    assert max(others) < events[f"end {SLOW}"] - 1  # the gap the final job must not fill
