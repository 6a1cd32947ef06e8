# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Run ids that are blank or too large for a request id get a clear refusal.

A blank ``--id`` must never mean "every run" (for ``bps cancel`` with a user
that would cancel all of them), and a number past a 64-bit request id must
not reach the server.
"""

from __future__ import annotations

import pytest
from fakes import FakeIDDSServer

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import PanDAService

HUGE = str(2**64)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))
    monkeypatch.setenv("PANDA_URL_SSL", "https://relay.test:25443/server/panda")
    monkeypatch.delenv("PANDA_AUTH", raising=False)


@pytest.fixture
def fake() -> FakeIDDSServer:
    server = FakeIDDSServer(username="jdoe")
    server.add_run("wf", {"wf_01_a_01": 1})
    server.add_run("other", {"other_01_a_01": 1})
    return server


@pytest.mark.parametrize("blank", ["", " ", "   ", "\t"])
def test_blank_id_is_refused_not_every_run(fake: FakeIDDSServer, blank: str) -> None:
    service = PanDAService({}, transport=fake)
    reports, message = service.report(wms_workflow_id=blank)
    assert reports == [] and "is blank" in message
    assert service.list_submitted_jobs(wms_id=blank, user="jdoe") == []
    ok, message = service.cancel(blank)
    assert not ok and "is blank" in message
    state, message = service.get_status(blank)
    assert state is WmsStates.UNKNOWN and "is blank" in message
    assert [name for name, _ in fake.calls if name == "abort"] == []
    assert all(fake.requests[rid].status.name != "Cancelled" for rid in fake.requests)


def test_id_larger_than_a_request_id_is_refused_before_the_server(fake: FakeIDDSServer) -> None:
    service = PanDAService({}, transport=fake)
    reports, message = service.report(wms_workflow_id=HUGE)
    assert reports == [] and f"'{HUGE}' is not an iDDS request id: ids are at most {2**63 - 1}" in message
    ok, message = service.cancel(HUGE)
    assert not ok and "is not an iDDS request id" in message
    assert fake.calls == []
