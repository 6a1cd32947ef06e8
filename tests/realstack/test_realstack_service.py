"""`PanDAService` against the real PanDA relay and iDDS server.

Exactly as ``bps`` calls the plugin: a `BpsConfig` with the plugin
defaults and ``iddsServer`` pointing at the real iDDS, ``prepare`` of a
GenericWorkflow from ctrl_bps's test set, ``submit``, then ``get_status``,
``report``, ``list_submitted_jobs``, ``cancel``, ``restart`` and ``ping``.
Without the iDDS daemons a request stays ``New``: its detail row has a
null ``request_id`` and null counters, which the plugin must handle.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rs_helpers import UNKNOWN_ID, Config, prepare_and_submit, service, three_label, unique_name
from rs_stack import RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(600)]


def test_ping(make_config: Config) -> None:
    assert service(make_config(unique_name("ping"))).ping() == (0, None)


def test_submit_status_and_report(make_config: Config) -> None:
    from lsst.ctrl.bps import WmsStates

    name = unique_name("small")
    generic = three_label(name)
    svc, workflow = prepare_and_submit(make_config(name), generic)
    run_id = workflow.run_id
    assert run_id is not None and run_id.isdigit() and int(run_id) > 0

    state, message = svc.get_status(run_id)
    assert state is WmsStates.PENDING, (state, message)

    reports, message = svc.report(wms_workflow_id=run_id)
    assert message == ""
    (report,) = reports
    assert report.wms_id == run_id
    assert report.state is WmsStates.PENDING
    assert report.total_number_jobs == len(generic)
    labels = set(report.job_summary)
    assert labels == {generic.get_job(job).label for job in generic}
    for label, counts in report.job_summary.items():
        assert sum(counts.values()) == len(generic.get_jobs_by_label(label)), (label, counts)

    # by submit directory, as `bps report --id <dir>` does
    reports, message = svc.report(wms_workflow_id=workflow.submit_path)
    assert message == "" and reports[0].wms_id == run_id


def test_submit_split_into_steps(
    make_config: Config, realstack: RealStack, caplog: pytest.LogCaptureFixture
) -> None:
    from lsst.ctrl.bps import WmsStates

    name = unique_name("steps")
    generic = three_label(name)
    with caplog.at_level("INFO", logger="lsst.ctrl.bps.panda.idds_transport"):
        svc, workflow = prepare_and_submit(make_config(name, maxRequestLength=3000), generic)
    assert "Submitted step 1 of" in caplog.text
    run_id = int(workflow.run_id)
    rows = realstack.sql("SELECT request_id, name FROM requests WHERE request_id = %s", [run_id])
    assert [row[1] for row in rows] == [name]
    state, message = svc.get_status(str(run_id))
    assert state is WmsStates.PENDING, message
    cache = Path(workflow.request_cache)
    assert any(cache.rglob("*")), "the split wrote its maps into the request cache"


def test_list_submitted_jobs(make_config: Config, realstack: RealStack) -> None:
    name = unique_name("list")
    svc, workflow = prepare_and_submit(make_config(name), three_label(name))
    assert svc.list_submitted_jobs(wms_id=workflow.run_id) == [workflow.run_id]
    assert svc.list_submitted_jobs() == []  # neither id nor user: nothing selected
    # the relay maps the caller's DN to the iDDS user name
    user = realstack.env["REALSTACK_CLIENT_DN"].rsplit("CN=", 1)[1]
    assert workflow.run_id in svc.list_submitted_jobs(user=user)
    assert workflow.run_id not in svc.list_submitted_jobs(user="somebody else")


def test_cancel_then_restart(make_config: Config, realstack: RealStack) -> None:
    name = unique_name("cancel")
    svc, workflow = prepare_and_submit(make_config(name), three_label(name))
    run_id = workflow.run_id
    cancelled, message = svc.cancel(run_id)
    assert cancelled, message
    commands = realstack.sql("SELECT cmd_type FROM commands WHERE request_id = %s", [int(run_id)])
    assert commands == [[10]], "an AbortRequest command was registered"

    new_id, run_name, message = svc.restart(run_id)
    # still New (no daemons): the restart is refused, with a reason
    assert (new_id, run_name) == (None, None)
    assert message and run_id in message


def test_unknown_ids(make_config: Config) -> None:
    from lsst.ctrl.bps import WmsStates

    svc = service(make_config(unique_name("unknown")))
    unknown = str(UNKNOWN_ID)
    state, message = svc.get_status(unknown)
    assert state is WmsStates.UNKNOWN and unknown in message
    reports, message = svc.report(wms_workflow_id=unknown)
    assert reports == [] and unknown in message
    cancelled, message = svc.cancel(unknown)
    assert not cancelled and unknown in message
    assert svc.restart(unknown)[:2] == (None, None)
    assert svc.list_submitted_jobs(wms_id=unknown) == []


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/server/panda"


def test_relay_down(make_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsst.ctrl.bps import WmsStates
    from lsst.ctrl.bps.panda import PanDAService
    from lsst.ctrl.bps.panda.exceptions import PanDAUnreachableError
    from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport, RetryPolicy

    dead = _dead_url()
    monkeypatch.setenv("PANDA_URL", dead)
    monkeypatch.setenv("PANDA_URL_SSL", dead)
    name = unique_name("down")
    config = make_config(name)
    svc = PanDAService(config, transport=PanDARelayTransport(retry=RetryPolicy(attempts=1)))
    status, message = svc.ping()
    assert status != 0 and "Connection refused" in str(message)
    state, message = svc.get_status("1")
    assert state is WmsStates.UNKNOWN and "Connection refused" in message
    workflow = svc.prepare(config, three_label(name), out_prefix=config["submitPath"])
    with pytest.raises(PanDAUnreachableError, match="Connection refused"):
        svc.submit(workflow)
