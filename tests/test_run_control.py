"""Tests of run control: status, list, cancel, restart, ping, checks."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from fakes import FakeIDDSServer
from idds.common.constants import ContentStatus, RequestStatus

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import run_control
from lsst.ctrl.bps.panda.exceptions import (
    IDDSRequestError,
    PandaAuthError,
    PanDAConfigError,
    PanDAUnreachableError,
    SubmissionCheckError,
    TokenExpiredError,
    TokenNotFoundError,
)
from lsst.ctrl.bps.panda.reporting import build_run_reports
from lsst.ctrl.bps.panda.submit_record import SubmitRecord, TaskRecord

S = WmsStates
CS = ContentStatus
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Private run index, fixed service URL, no OIDC unless a test asks."""
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))
    monkeypatch.setenv("PANDA_URL_SSL", "https://relay.test:25443/server/panda")
    for name in ("PANDA_AUTH", "PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PANDA_CONFIG_ROOT", str(tmp_path / "panda_config"))


@pytest.fixture
def fake():
    return FakeIDDSServer(username="jdoe")


def add_run(fake, name="wf", **kwargs):
    return fake.add_run(name, {f"{name}_01_a_01": 2, f"{name}_02_b_01": 1}, **kwargs)


def subfinished(fake, name="wf"):
    rid = add_run(fake, name)
    fake.set_jobs(rid, f"{name}_01_a_01", {CS.Available: 1, CS.FinalFailed: 1})
    fake.set_jobs(rid, f"{name}_02_b_01", {CS.Missing: 1})
    return rid


def submit_dir(tmp_path, rid, name="wf"):
    path = tmp_path / name
    path.mkdir()
    record = SubmitRecord(
        name, str(path), {f"{name}_01_a_01": TaskRecord("a", 2), f"{name}_02_b_01": TaskRecord("b", 1)}, rid
    )
    record.write()
    record.register()
    return path


# ------------------------------------------------------------- get_status
SCENARIOS = {
    "running": (lambda f: add_run(f), S.RUNNING),
    "succeeded": (lambda f: _then(f, add_run(f), f.finish_all), S.SUCCEEDED),
    "subfinished": (subfinished, S.FAILED),
    "cancelled": (lambda f: _then(f, add_run(f), f.abort), S.DELETED),
    "suspended": (
        lambda f: _then(f, add_run(f), lambda r: f.force_status(r, RequestStatus.Suspended)),
        S.HELD,
    ),
    "expiring": (
        lambda f: _then(f, add_run(f), lambda r: f.force_status(r, RequestStatus.Expiring)),
        S.RUNNING,
    ),
}


def _then(fake, rid, action):
    action(rid)
    return rid


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_status_and_report_agree(fake, scenario):
    make, expected = SCENARIOS[scenario]
    rid = make(fake)
    fake.calls.clear()
    assert run_control.get_status(fake, str(rid)) == (expected, "")
    assert fake.calls == [("get_requests", (rid, False))]  # cheap: no detail
    reports, _ = build_run_reports(fake, str(rid), None, 2, False)
    assert reports[0].state is expected


def test_status_by_submit_dir_and_of_unknown_ids(fake, tmp_path):
    rid = add_run(fake)
    assert run_control.get_status(fake, str(submit_dir(tmp_path, rid))) == (S.RUNNING, "")
    state, message = run_control.get_status(fake, "4242")
    assert state is S.UNKNOWN and "'4242'" in message
    state, message = run_control.get_status(fake, str(tmp_path / "nowhere"))
    assert state is S.UNKNOWN and "nowhere" in message


def test_status_of_an_unknown_iDDS_status(fake):
    rid = add_run(fake)

    def odd(row):
        row["status"]["attributes"]["_name_"] = "Exploded"

    fake.row_edits.append(odd)
    state, message = run_control.get_status(fake, str(rid))
    assert state is S.UNKNOWN and "Exploded" in message


# --------------------------------------------------------- list_submitted
def test_list_submitted(fake, tmp_path):
    mine = add_run(fake, "mine")
    done = add_run(fake, "done")
    fake.finish_all(done)
    theirs = add_run(fake, "theirs", username="alice")
    assert run_control.list_submitted(fake, None, None) == []
    assert run_control.list_submitted(fake, "", None) == []
    assert run_control.list_submitted(fake, str(mine), None) == [str(mine)]
    assert run_control.list_submitted(fake, str(submit_dir(tmp_path, theirs)), None) == [str(theirs)]
    assert run_control.list_submitted(fake, "999", None) == []
    assert run_control.list_submitted(fake, "no-such-thing", None) == []
    assert run_control.list_submitted(fake, None, "jdoe") == [str(mine)]
    assert run_control.list_submitted(fake, None, "ALICE") == [str(theirs)]
    assert run_control.list_submitted(fake, None, "nobody") == []


def test_list_submitted_when_the_server_fails(fake, caplog):
    rid = add_run(fake)
    fake.fail_next("get_requests", PanDAUnreachableError("get_requests", rid, "Connection refused"))
    # With an id, the id is passed on so that cancel reports the failure.
    assert run_control.list_submitted(fake, str(rid), None) == [str(rid)]
    fake.fail_next("get_requests", PanDAUnreachableError("get_requests", None, "Connection refused"))
    assert run_control.list_submitted(fake, None, "jdoe") == []
    assert "Connection refused" in caplog.text


# ------------------------------------------------------------------ cancel
def test_cancel_active_run(fake, tmp_path):
    rid = add_run(fake)
    fake.set_jobs(rid, "wf_01_a_01", {CS.Processing: 1})
    ok, message = run_control.cancel(fake, str(submit_dir(tmp_path, rid)))
    assert ok and str(rid) in message
    assert run_control.get_status(fake, str(rid))[0] is S.DELETED


@pytest.mark.parametrize(
    ("prepare", "match"),
    [
        (lambda f: 999, "'999'"),
        (lambda f: _then(f, add_run(f), f.finish_all), "already ended (Finished)"),
        (lambda f: _then(f, add_run(f), f.abort), "already ended (Cancelled)"),
        (lambda f: add_run(f, username="alice"), "has no permission"),
    ],
    ids=["unknown", "finished", "cancelled", "other-user"],
)
def test_cancel_refusals(fake, prepare, match):
    rid = prepare(fake)
    ok, message = run_control.cancel(fake, str(rid))
    assert ok is False
    assert match in message


def test_cancel_with_neither_id_nor_user_cancels_nothing(fake, capsys):
    from lsst.ctrl.bps.cancel import cancel

    rid = add_run(fake)

    class Service:
        def list_submitted_jobs(self, wms_id, user, require_bps, pass_thru, is_global):
            return run_control.list_submitted(fake, wms_id, user)

        def cancel(self, wms_id, pass_thru):
            return run_control.cancel(fake, wms_id)

    cancel(Service())
    assert "No job matches" in capsys.readouterr().out
    assert not [c for c in fake.calls if c[0] == "abort"]
    cancel(Service(), wms_id=str(rid))
    assert f"Successfully canceled job with id '{rid}'" in capsys.readouterr().out
    cancel(Service(), wms_id=str(rid))
    assert "No job matches" not in (out := capsys.readouterr().out) and "Couldn't cancel" in out


# ----------------------------------------------------------------- restart
def test_restart_retries_failed_jobs_in_place(fake, tmp_path):
    rid = subfinished(fake)
    path = submit_dir(tmp_path, rid)
    run_id, name, message = run_control.restart(fake, str(path))
    assert (run_id, name) == (str(rid), "wf")
    assert "registered" in message
    assert run_control.get_status(fake, str(rid))[0] is S.RUNNING
    report = build_run_reports(fake, str(rid), None, 2, False)[0][0]
    assert report.job_state_counts[S.FAILED] == 0 and report.job_state_counts[S.PRUNED] == 0


def test_restart_by_request_id_without_record_uses_the_request_name(fake):
    rid = subfinished(fake, "named")
    assert run_control.restart(fake, str(rid))[:2] == (str(rid), "named")


@pytest.mark.parametrize(
    ("prepare", "match"),
    [
        (lambda f: add_run(f), "still running (Transforming)"),
        (lambda f: _then(f, add_run(f), f.finish_all), "completed successfully"),
        (lambda f: 31337, "'31337'"),
        (
            lambda f: _then(f, add_run(f), lambda r: f.force_status(r, RequestStatus.ToCancel)),
            "still running",
        ),
    ],
    ids=["running", "succeeded", "unknown", "being-cancelled"],
)
def test_restart_refusals(fake, prepare, match):
    rid = prepare(fake)
    fake.calls.clear()
    run_id, name, message = run_control.restart(fake, str(rid))
    assert (run_id, name) == (None, None)
    assert match in message
    assert not [c for c in fake.calls if c[0] == "retry"]


def test_restart_of_another_users_run_is_refused_by_the_server(fake):
    rid = subfinished(fake)
    fake.requests[rid].username = "alice"
    assert run_control.restart(fake, str(rid)) == (
        None,
        None,
        f"Cannot restart run '{rid}': iDDS command 'retry' for request {rid} failed: "
        f"User jdoe has no permission to update request {rid}",
    )


def test_restart_of_a_cancelled_run_is_allowed(fake):
    rid = add_run(fake)
    fake.abort(rid)
    run_id, _, _ = run_control.restart(fake, str(rid))
    assert run_id == str(rid)
    assert run_control.get_status(fake, run_id)[0] is S.RUNNING


# -------------------------------------------------------------------- ping
def test_ping_ok(fake):
    assert run_control.ping(fake) == (0, None)
    run_control.submission_checks(fake)


@pytest.mark.parametrize(
    ("error", "code", "match"),
    [
        (
            PanDAUnreachableError("ping", None, "PanDA relay unreachable: [Errno 111] Connection refused"),
            2,
            "refused",
        ),
        (IDDSRequestError("ping", None, "SSL secure connection is required"), 3, "authentication failed"),
        (IDDSRequestError("ping", None, "ERROR : Token authentication failed."), 3, "Token"),
        (IDDSRequestError("ping", None, "(401) User Test User is not allowed"), 3, "not allowed"),
        (
            IDDSRequestError("ping", None, "failed to execute command with No section: 'rest'"),
            4,
            "No section",
        ),
    ],
)
def test_ping_failures_have_their_own_codes(fake, error, code, match):
    fake.fail_next("ping", error, times=2)
    status, message = run_control.ping(fake)
    assert status == code and match in message
    with pytest.raises(IDDSRequestError if code != 3 else PandaAuthError, match=match):
        run_control.submission_checks(fake)


def test_ping_unexpected_reply(fake):
    fake.ping = lambda: {"Status": "maintenance"}
    status, message = run_control.ping(fake)
    assert status == run_control.PING_REFUSED and "maintenance" in message


def _jwt(claims):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("lifetime", "ok", "error", "match"),
    [
        (3600 * 24, True, None, None),
        (-60, False, TokenExpiredError, "expired"),
        (60, False, TokenExpiredError, "expires at"),
    ],
)
def test_oidc_token_checks(fake, monkeypatch, lifetime, ok, error, match):
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.setenv(
        "PANDA_AUTH_ID_TOKEN", _jwt({"sub": "x", "name": "jdoe", "exp": time.time() + lifetime})
    )
    status, message = run_control.ping(fake)
    if ok:
        assert (status, message) == (0, None)
        return
    assert status == run_control.PING_TOKEN_PROBLEM and match in message
    assert not [c for c in fake.calls if c[0] == "ping"]  # token checked first
    with pytest.raises(error, match=match):
        run_control.submission_checks(fake)


def test_oidc_token_missing(fake, monkeypatch):
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    status, message = run_control.ping(fake)
    assert status == run_control.PING_TOKEN_PROBLEM and "No OIDC token file" in message
    with pytest.raises(TokenNotFoundError):
        run_control.submission_checks(fake)


# ------------------------------------------- every envelope error, every call
def _envelope_errors():
    from lsst.ctrl.bps.panda.idds_transport import unwrap_reply

    rows = json.loads((DATA / "relay-envelopes.json").read_text())["rows"]
    errors = []
    for row in rows:
        if "error" not in row["expect"] or "reply" not in row:
            continue
        try:
            unwrap_reply(row["operation"], row.get("request_id"), row["reply"])
        except IDDSRequestError as exc:
            assert type(exc).__name__ == row["expect"]["error"]
            errors.append(pytest.param(exc, row["expect"]["match"], id=row["id"]))
    # Errors of the client set-up, raised by the transport before any call.
    errors.append(
        pytest.param(PanDAConfigError("PANDA_URL_SSL", "PANDA_URL not set"), "PANDA_URL", id="client-config")
    )
    errors.append(
        pytest.param(PandaAuthError("panda-client gave up (exit status 255)"), "gave up", id="client-exit")
    )
    return errors


ENVELOPE_ERRORS = _envelope_errors()


def test_envelope_table_is_not_empty():
    assert len(ENVELOPE_ERRORS) >= 30


@pytest.mark.parametrize(("error", "match"), ENVELOPE_ERRORS)
def test_every_envelope_error_through_every_call(fake, error, match):
    rid = subfinished(fake)
    active = add_run(fake, "active")
    checks = [
        ("get_requests", lambda: build_run_reports(fake, str(rid), None, 2, False), lambda r: r[0] == []),
        (
            "get_contents_output_ext",
            lambda: build_run_reports(fake, str(rid), None, 2, True),
            lambda r: r[0] == [],
        ),
        ("get_requests", lambda: build_run_reports(fake, None, None, 2, False), lambda r: r[0] == []),
        ("get_requests", lambda: run_control.get_status(fake, str(rid)), lambda r: r[0] is S.UNKNOWN),
        ("get_requests", lambda: run_control.cancel(fake, str(active)), lambda r: r[0] is False),
        ("abort", lambda: run_control.cancel(fake, str(active)), lambda r: r[0] is False),
        ("get_requests", lambda: run_control.restart(fake, str(rid)), lambda r: r[0] is None),
        ("retry", lambda: run_control.restart(fake, str(rid)), lambda r: r[0] is None),
        ("ping", lambda: run_control.ping(fake), lambda r: r[0] != 0),
    ]
    for method, call, failed in checks:
        fake.fail_next(method, error)
        result = call()
        assert failed(result), (method, result)
        message = result[-1]
        assert isinstance(message, str) and match in message, (method, message)
        assert "Traceback" not in message
    assert run_control.get_status(fake, str(active)) == (S.RUNNING, "")  # nothing was aborted


# ------------------------------------------------------ through PanDAService
def _submit_config():
    from lsst.ctrl.bps import BpsConfig

    return BpsConfig(
        {"computeSite": "S", "fileDistributionEndPoint": "/d", "submitPath": "/s", "uniqProcName": "r"}
    )


def test_service_methods_use_the_given_transport(fake, tmp_path):
    from lsst.ctrl.bps.panda import PanDAService

    service = PanDAService(_submit_config(), transport=fake)
    rid = subfinished(fake)
    path = submit_dir(tmp_path, rid)
    assert service.ping() == (0, None)
    service.run_submission_checks()
    assert service.get_status(str(path)) == (S.FAILED, "")
    reports, message = service.report(wms_workflow_id=str(rid), return_exit_codes=True)
    assert message == "" and reports[0].path == str(path)
    assert reports[0].exit_code_summary == {"a": [1], "b": []}
    assert service.list_submitted_jobs() == []
    assert service.list_submitted_jobs(wms_id=str(path)) == [str(rid)]
    assert service.restart(str(path))[:2] == (str(rid), "wf")
    assert service.list_submitted_jobs(user="jdoe") == [str(rid)]
    assert service.cancel(str(rid))[0] is True
    assert service.get_status(str(rid))[0] is S.DELETED
    reports, message = service.report(hist=1)
    assert message == "" and [r.wms_id for r in reports] == [str(rid)]


def test_service_methods_with_a_failing_relay(fake):
    from lsst.ctrl.bps.panda import PanDAService

    service = PanDAService(_submit_config(), transport=fake)
    rid = add_run(fake)
    down = PanDAUnreachableError("x", None, "PanDA relay unreachable: [Errno 111] Connection refused")
    for method in ("ping", "get_requests"):
        fake.fail_next(method, down, times=10)
    assert service.ping()[0] == run_control.PING_UNREACHABLE
    with pytest.raises(SubmissionCheckError, match="Connection refused") as info:
        service.run_submission_checks()
    assert isinstance(info.value.__cause__, PanDAUnreachableError)
    assert service.get_status(str(rid))[0] is S.UNKNOWN
    assert service.report(wms_workflow_id=str(rid))[0] == []
    assert service.cancel(str(rid))[0] is False
    assert service.restart(str(rid))[0] is None
