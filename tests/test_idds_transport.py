"""Tests of the iDDS transport against the local PanDA service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from idds.common.utils import json_dumps
from idds.doma.workflowv2.domapandawork import DomaPanDAWork
from idds.workflowv2.workflow import Workflow

from lsst.ctrl.bps import BpsConfig
from lsst.ctrl.bps.panda import exceptions
from lsst.ctrl.bps.panda.exceptions import (
    IDDSRequestError,
    PandaAuthError,
    PanDAConfigError,
    PanDAUnreachableError,
    WorkflowTranslationError,
)
from lsst.ctrl.bps.panda.idds_transport import (
    PanDARelayTransport,
    RetryPolicy,
    transport_from_config,
    unwrap_reply,
)
from lsst.ctrl.bps.panda.request_encoding import encode_workflow
from lsst.ctrl.bps.panda.utils import get_idds_client

DATA = Path(__file__).parent / "data"
PANDA_LOCAL = Path(sys.executable).parent / "panda-local"
ENVELOPES = json.loads((DATA / "relay-envelopes.json").read_text())["rows"]


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local PanDA service on a free loopback port; yields its env."""
    state = tmp_path_factory.mktemp("panda-local")
    env = dict(os.environ, PANDA_BEHIND_REAL_LB="1")
    subprocess.run(
        [str(PANDA_LOCAL), "start", "--state-dir", str(state), "--port", "0", "--workers", "2"],
        check=True,
        env=env,
        capture_output=True,
    )
    try:
        out = subprocess.run(
            [str(PANDA_LOCAL), "env", "--json", "--state-dir", str(state)],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        yield json.loads(out)
    finally:
        subprocess.run(
            [str(PANDA_LOCAL), "stop", "--state-dir", str(state)], env=env, capture_output=True, check=False
        )


@pytest.fixture
def relay_env(service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Apply the service's client environment for one test."""
    for key in ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN", "OIDC_AUTH_VO"):
        monkeypatch.delenv(key, raising=False)
    for key, value in service.items():
        monkeypatch.setenv(key, value)
    return service


@pytest.fixture
def closed_port_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the client at a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/server/panda"
    monkeypatch.setenv("PANDA_URL", url)
    monkeypatch.setenv("PANDA_URL_SSL", url)
    monkeypatch.setenv("PANDA_BEHIND_REAL_LB", "1")
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.setenv("PANDA_AUTH_VO", "Rubin")
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", "not-used")
    return url


class Recorder:
    """Wraps the transport's one seam to count and record calls."""

    def __init__(self, transport: PanDARelayTransport, replies: list[Any] | None = None) -> None:
        self.inner = transport._raw_call
        self.replies = list(replies or [])
        self.calls: list[tuple[str, dict[str, Any], Any]] = []

    def __call__(self, command: str, kwargs: dict[str, Any], dumper: Any = None) -> Any:
        self.calls.append((command, kwargs, dumper))
        if self.replies:
            return self.replies.pop(0)
        return self.inner(command, kwargs, dumper)

    def commands(self) -> list[str]:
        return [call[0] for call in self.calls]


def recording(transport: PanDARelayTransport, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Recorder:
    recorder = Recorder(transport, **kw)
    monkeypatch.setattr(transport, "_raw_call", recorder)
    return recorder


def fast_transport(attempts: int = 3) -> tuple[PanDARelayTransport, list[float]]:
    sleeps: list[float] = []
    transport = PanDARelayTransport(retry=RetryPolicy(attempts, 0.001, 0.004), sleep=sleeps.append)
    return transport, sleeps


def make_workflow(name: str, jobs: int = 2) -> Workflow:
    """A 2-work DOMA workflow: b<j> depends on a<j>."""

    def work(label: str, dependency_map: list[dict[str, Any]]) -> DomaPanDAWork:
        return DomaPanDAWork(
            executable="true ${IN/L}",
            primary_input_collection={"scope": "pseudo_dataset", "name": f"pseudo_input_collection#{label}"},
            output_collections=[{"scope": "pseudo_dataset", "name": f"pseudo_output_collection#{label}"}],
            log_collections=[],
            dependency_map=dependency_map,
            task_name=f"{name}_{label}",
            task_queue="LOCAL",
            task_site="LOCAL",
            encode_command_line=False,
            maxattempt=1,
        )

    first = work("a", [{"name": f"a{j}", "order_id": j, "dependencies": []} for j in range(jobs)])
    second_map = [
        {
            "name": f"b{j}",
            "order_id": j,
            "dependencies": [{"task": first.get_work_name(), "inputname": f"a{j}"}],
        }
        for j in range(jobs)
    ]
    workflow = Workflow(name=name)
    workflow.add_work(first)
    workflow.add_work(work("b", second_map))
    return workflow


@pytest.fixture(scope="module")
def submitted(service: dict[str, str]) -> int:
    """One request submitted to the module's service."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in service.items():
            patch.setenv(key, value)
        patch.delenv("PANDA_AUTH_ID_TOKEN", raising=False)
        return PanDARelayTransport().submit(
            encode_workflow(make_workflow("tr_fixture"), 10**8), request_cache="/nonexistent"
        )


# --------------------------------------------------------------------------
# The envelope table (doc/wire-protocol.md §5), through the one seam


def _reply(row: dict[str, Any]) -> Any:
    if "reply_file" in row:
        return (0, json.loads((DATA / row["reply_file"]).read_text()))
    if not row.get("reply_bytes"):
        return tuple(row["reply"])
    status, payload = row["reply"]
    return (status, payload.encode())


@pytest.mark.parametrize("row", ENVELOPES, ids=[row["id"] for row in ENVELOPES])
def test_unwrap_envelope_table(row: dict[str, Any]) -> None:
    expect = row["expect"]
    request_id = row.get("request_id")
    if "error" in expect:
        error_class = getattr(exceptions, expect["error"])
        with pytest.raises(error_class, match=expect["match"]) as info:
            unwrap_reply(row["operation"], request_id, _reply(row))
        assert type(info.value) is error_class  # not a subclass
        assert info.value.operation == row["operation"]
        assert info.value.request_id == request_id
        if request_id is not None:
            assert f"request {request_id}" in str(info.value)
    elif "rows" in expect:
        rows = unwrap_reply(row["operation"], request_id, _reply(row))
        assert len(rows) == expect["rows"]
        assert all(r["name"] == "wf_fresh" for r in rows)
    else:
        assert unwrap_reply(row["operation"], request_id, _reply(row)) == expect["result"]


def test_envelope_table_covers_every_situation() -> None:
    sections = {row["section"] for row in ENVELOPES}
    for situation in (
        "success",
        "ClientManager raised",
        "iDDS REST rejected the caller",
        "abort/retry/close unknown id",
        "abort/retry on another user's request",
        "abort/retry accepted",
        "get_requests of an unknown id",
        "command not a ClientManager attribute",
        "relay-side exception",
        "no client identity",
        "HTTP 500/403/404 from the server",
        "network / TLS error",
    ):
        assert situation in sections


def test_unwrap_long_message_is_truncated() -> None:
    with pytest.raises(IDDSRequestError) as info:
        unwrap_reply("get_requests", None, (0, [True, [False, "x" * 50_000]]))
    assert len(str(info.value)) < 2000
    assert "50000 chars" in str(info.value)


# --------------------------------------------------------------------------
# Against the local service


def test_ping(relay_env: dict[str, str]) -> None:
    assert PanDARelayTransport().ping() == {"Status": "OK"}


def test_ping_with_idds_server_config(relay_env: dict[str, str]) -> None:
    transport = transport_from_config(BpsConfig({"iddsServer": "http://127.0.0.1:1/idds"}))
    assert transport.idds_host == "http://127.0.0.1:1/idds"
    assert transport.ping() == {"Status": "OK"}


def test_transport_from_empty_config() -> None:
    assert transport_from_config({}).idds_host is None
    assert transport_from_config(BpsConfig({})).idds_host is None
    assert transport_from_config({"iddsServer": "https://idds/idds"}).idds_host == "https://idds/idds"


def test_submit_sends_the_encoded_text(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The request is serialised once, when encoded; submit sends that text
    (the workflow is not serialised again) and the bytes are unchanged."""
    transport = PanDARelayTransport()
    recorder = recording(transport, monkeypatch)
    workflow = make_workflow("tr_submit")
    request = encode_workflow(workflow, 10**8)
    counts = {"to_dict": 0}
    original = Workflow.to_dict

    def counting(self: Workflow) -> Any:
        counts["to_dict"] += 1
        return original(self)

    monkeypatch.setattr(Workflow, "to_dict", counting)
    request_id = transport.submit(request, request_cache="/nonexistent")
    assert isinstance(request_id, int) and request_id > 0
    assert counts["to_dict"] == 0
    monkeypatch.setattr(Workflow, "to_dict", original)
    ((command, kwargs, dumper),) = recorder.calls
    assert command == "submit"
    assert kwargs == {"workflow": workflow, "username": None, "use_dataset_name": False}
    assert dumper(kwargs) == json_dumps(kwargs)  # the bytes on the wire are unchanged
    (row,) = transport.get_requests(request_id)
    assert row["name"] == "tr_submit"


def test_submit_non_int_result_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = PanDARelayTransport()
    recording(transport, monkeypatch, replies=[(0, [True, "3"]), (0, [True, None]), (0, [True, 0])])
    for _ in range(3):
        with pytest.raises(IDDSRequestError, match="no request id for the workflow"):
            transport.submit(encode_workflow(make_workflow("tr_bad"), 10**8), request_cache="/x")


def test_unserialisable_workflow_is_refused_before_submit() -> None:
    workflow = make_workflow("tr_unserialisable")
    workflow.template.bad_attribute = {1, 2}  # a set is not JSON
    with pytest.raises(WorkflowTranslationError, match="cannot be serialised"):
        encode_workflow(workflow, 10**8)


def test_get_requests_without_detail(relay_env: dict[str, str], submitted: int) -> None:
    (row,) = PanDARelayTransport().get_requests(submitted)
    assert row["request_id"] == submitted
    assert row["name"] == "tr_fixture"
    assert row["status"]["attributes"]["_name_"]
    assert "transform_id" not in row and "output_total_files" not in row


def test_get_requests_with_detail(relay_env: dict[str, str], submitted: int) -> None:
    rows = PanDARelayTransport().get_requests(submitted, with_detail=True)
    assert sorted(row["transform_name"] for row in rows) == ["tr_fixture_a", "tr_fixture_b"]
    assert all("output_total_files" in row for row in rows)


def test_get_requests_all_and_unknown(relay_env: dict[str, str], submitted: int) -> None:
    transport = PanDARelayTransport()
    assert submitted in {row["request_id"] for row in transport.get_requests()}
    assert transport.get_requests(10**8) == []


def test_get_contents_output_ext(relay_env: dict[str, str], submitted: int) -> None:
    transport = PanDARelayTransport()
    transforms = {row["transform_id"] for row in transport.get_requests(submitted, with_detail=True)}
    contents = transport.get_contents_output_ext(submitted, None)
    assert {int(key) for key in contents} == transforms
    assert all(len(rows) == 2 for rows in contents.values())


def test_abort_unknown_id(relay_env: dict[str, str]) -> None:
    with pytest.raises(IDDSRequestError, match="No match requests") as info:
        PanDARelayTransport().abort(987654)
    assert info.value.operation == "abort"
    assert info.value.request_id == 987654


def test_retry_unknown_id(relay_env: dict[str, str]) -> None:
    with pytest.raises(IDDSRequestError, match="No match requests") as info:
        PanDARelayTransport().retry(987654)
    assert info.value.operation == "retry"


def test_abort_and_retry_accepted(relay_env: dict[str, str]) -> None:
    transport = PanDARelayTransport()
    request_id = transport.submit(encode_workflow(make_workflow("tr_abort"), 10**8), request_cache="/x")
    assert transport.abort(request_id) == "Command registered successfully"
    assert transport.retry(request_id) == "Command registered successfully"


def test_unknown_command(relay_env: dict[str, str]) -> None:
    raw = get_idds_client({}).suspend(request_id=5)  # the compat client sends any command as it is
    with pytest.raises(IDDSRequestError, match="suspend is not a command") as info:
        unwrap_reply("suspend", 5, raw)
    assert info.value.request_id == 5


def test_wrong_token(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", "eyJhbGciOiJub25lIn0.e30.forged")
    transport, sleeps = fast_transport()
    recorder = recording(transport, monkeypatch)
    with pytest.raises(IDDSRequestError, match="Token authentication failed") as info:
        transport.get_requests()
    assert not isinstance(info.value, PanDAUnreachableError)
    assert recorder.commands() == ["get_requests"]  # not retried
    assert sleeps == []


def test_stdout_stays_clean_without_oidc(
    relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PANDA_AUTH")
    monkeypatch.setenv("X509_USER_PROXY", "")
    with pytest.raises(IDDSRequestError, match="No bearer token"):
        PanDARelayTransport().ping()
    assert capfd.readouterr().out == ""


def test_relay_down_read_only_retried(closed_port_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, sleeps = fast_transport(attempts=3)
    recorder = recording(transport, monkeypatch)
    with pytest.raises(PanDAUnreachableError, match="Connection refused.*after 3 attempts"):
        transport.get_requests(4)
    assert recorder.commands() == ["get_requests"] * 3
    assert len(sleeps) == 2
    assert 0.0005 <= sleeps[0] <= 0.001 and 0.001 <= sleeps[1] <= 0.002


def test_relay_down_ping_and_contents_retried(closed_port_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, _ = fast_transport(attempts=2)
    recorder = recording(transport, monkeypatch)
    with pytest.raises(PanDAUnreachableError):
        transport.ping()
    with pytest.raises(PanDAUnreachableError):
        transport.get_contents_output_ext(4, None)
    assert recorder.commands() == ["ping", "ping", "get_contents_output_ext", "get_contents_output_ext"]


def test_relay_down_writes_not_retried(closed_port_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, sleeps = fast_transport(attempts=5)
    recorder = recording(transport, monkeypatch)
    with pytest.raises(PanDAUnreachableError, match="not retried") as info:
        transport.submit(encode_workflow(make_workflow("tr_down"), 10**8), request_cache="/x")
    assert info.value.operation == "submit"
    with pytest.raises(PanDAUnreachableError):
        transport.abort(4)
    with pytest.raises(PanDAUnreachableError):
        transport.retry(4)
    assert recorder.commands() == ["submit", "abort", "retry"]
    assert sleeps == []


@pytest.fixture
def hanging_up_env(closed_port_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A loopback listener that closes every connection unanswered."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[int] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/server/panda"
    monkeypatch.setenv("PANDA_URL", url)
    monkeypatch.setenv("PANDA_URL_SSL", url)
    yield accepted
    done.set()
    thread.join(timeout=5)
    listener.close()


def test_relay_hangs_up(hanging_up_env: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    transport, sleeps = fast_transport(attempts=3)
    with pytest.raises(
        PanDAUnreachableError, match="(Server disconnected|Connection reset).*after 3 attempts"
    ):
        transport.get_requests(4)
    assert len(hanging_up_env) == 3 and len(sleeps) == 2
    with pytest.raises(PanDAUnreachableError, match="not retried"):
        transport.submit(encode_workflow(make_workflow("tr_hangup"), 10**8), request_cache="/x")
    assert len(hanging_up_env) == 4


def test_transient_failure_then_success(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    transport, sleeps = fast_transport(attempts=3)
    recorder = recording(transport, monkeypatch, replies=[(255, "[Errno 111] Connection refused")])
    assert transport.ping() == {"Status": "OK"}
    assert recorder.commands() == ["ping", "ping"]
    assert len(sleeps) == 1


def test_split_into_steps(relay_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = PanDARelayTransport()
    recorder = recording(transport, monkeypatch)
    workflow = make_workflow("tr_steps", jobs=20)
    size = len(json_dumps(workflow))
    request_id = transport.submit(encode_workflow(workflow, size // 4), request_cache=str(tmp_path))
    commands = recorder.commands()
    assert commands[-1] == "submit" and len(commands) >= 2
    steps = [call[1]["workflow"] for call in recorder.calls[:-1]]
    assert all(step.is_workflow_step for step in steps)
    assert recorder.calls[-1][1]["workflow"] is workflow
    assert any(tmp_path.rglob("*"))  # the maps were written into the request cache
    contents = transport.get_contents_output_ext(request_id, None)
    assert sorted(len(rows) for rows in contents.values()) == [20, 20]


def test_missing_panda_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANDA_URL", raising=False)
    monkeypatch.setenv("PANDA_URL_SSL", "http://127.0.0.1:9/server/panda")
    transport = PanDARelayTransport()  # construction checks nothing
    with pytest.raises(PanDAConfigError, match="PANDA_URL not set") as info:
        transport.ping()
    assert info.value.key == "PANDA_URL"
    monkeypatch.delenv("PANDA_URL_SSL")
    with pytest.raises(PanDAConfigError, match="PANDA_URL and PANDA_URL_SSL not set"):
        transport.get_requests()


def test_oidc_without_vo(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANDA_AUTH_VO")
    with pytest.raises(PanDAConfigError, match="PANDA_AUTH=oidc requires .*PANDA_AUTH_VO"):
        PanDARelayTransport().ping()
    monkeypatch.setenv("OIDC_AUTH_VO", "Rubin")
    assert PanDARelayTransport().ping() == {"Status": "OK"}


def test_client_exit_becomes_auth_error(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pandaclient import Client

    def exits(self: Any, force_new: bool = False) -> bool:
        raise SystemExit(255)

    monkeypatch.setattr(Client._HttpClient, "get_id_token", exits)
    with pytest.raises(PandaAuthError, match="exit status 255"):
        PanDARelayTransport().ping()


def test_loopback_sets_behind_real_lb(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[Any] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.delenv("PANDA_BEHIND_REAL_LB")
    monkeypatch.setattr(socket, "getaddrinfo", spy)
    assert PanDARelayTransport().ping() == {"Status": "OK"}
    assert os.environ["PANDA_BEHIND_REAL_LB"] == "1"
    assert set(looked_up) <= {"127.0.0.1"}


def _fail_lookups(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    looked_up: list[Any] = []

    def no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return looked_up


def test_dns_rule_for_host_names(closed_port_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://relay.example.invalid:25080/server/panda"
    monkeypatch.setenv("PANDA_URL", url)
    monkeypatch.setenv("PANDA_URL_SSL", url)
    monkeypatch.delenv("PANDA_BEHIND_REAL_LB")
    monkeypatch.delenv("CTRL_BPS_PANDA_NO_DNS_LB", raising=False)
    import pandaclient.Client  # noqa: F401 (imported before lookups fail)

    _fail_lookups(monkeypatch)
    transport, _ = fast_transport(attempts=1)
    with pytest.raises(IDDSRequestError):
        transport.ping()
    assert "PANDA_BEHIND_REAL_LB" not in os.environ  # host names keep panda-client's DNS spreading
    monkeypatch.setenv("CTRL_BPS_PANDA_NO_DNS_LB", "1")
    with pytest.raises(PanDAUnreachableError, match="Name or service not known"):
        transport.ping()
    assert os.environ["PANDA_BEHIND_REAL_LB"] == "1"


def test_import_does_not_load_pandaclient() -> None:
    code = (
        "import sys, lsst.ctrl.bps.panda.idds_transport as t; "
        "t.transport_from_config({}); print('pandaclient' in sys.modules)"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PANDA_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_retry_policy_bounds() -> None:
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=4.0)
    delays = [policy.delay(attempt) for attempt in range(1, 6)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert all(2.0 <= delay <= 4.0 for delay in delays[2:])
