"""Wire-level contract: panda-client's iDDS API against each relay.

The calls are exactly the ones the plugin makes
(``get_api(json_dumps, idds_host=iddsServer, compress=True, manager=True)``),
against the real panda-server relay + iDDS REST ("real") and against the
local PanDA service ("local"); every test runs on both. The expected
replies are the ones recorded from the real servers; the last tests
compare the two relays' replies key by key and type by type.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from rs_helpers import UNKNOWN_ID, chain_workflow, enum_name, payload, shape_differences, unique_name
from rs_stack import Backend

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(600)]


def _submit(api: Any, tag: str, jobs: int = 2) -> tuple[int, str]:
    name = unique_name(tag)
    ret = api.submit(chain_workflow(name, jobs), username=None, use_dataset_name=False)
    request_id = payload(ret)
    assert isinstance(request_id, int) and request_id > 0, ret
    return request_id, name


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/server/panda"


def test_ping(backend: Backend) -> None:
    assert backend.api().ping() == (0, [True, {"Status": "OK"}])


def test_submit_then_get_requests(backend: Backend) -> None:
    api = backend.api()
    request_id, name = _submit(api, "get")
    rows = payload(api.get_requests(request_id=request_id, with_detail=True))
    assert isinstance(rows, list) and rows, rows
    for row in rows:
        # the real server's row has a null request_id until transforms exist
        assert row["request_id"] in (request_id, None), row["request_id"]
        assert row["name"] == name and row["scope"] == "workflow"
        assert enum_name(row["status"]) in ("New", "Ready", "Transforming"), row["status"]
        assert row["status"]["attributes"]["_value_"] in (0, 1, 2)
        assert row["username"]
    plain = payload(api.get_requests(request_id=request_id))
    assert [r["request_id"] for r in plain] == [request_id]
    assert "transform_id" not in plain[0]


def test_get_requests_unknown_id(backend: Backend) -> None:
    assert backend.api().get_requests(request_id=UNKNOWN_ID, with_detail=True) == (0, [True, []])


def test_abort_registered(backend: Backend) -> None:
    api = backend.api()
    request_id, _ = _submit(api, "abort")
    result = payload(api.abort(request_id=request_id))
    assert result == [[0, {"message": "Command registered successfully", "status": 0}]]


def test_abort_and_retry_unknown_id(backend: Backend) -> None:
    api = backend.api()
    no_match = [[-1, {"message": "No match requests", "status": -1}]]
    assert payload(api.abort(request_id=UNKNOWN_ID)) == no_match
    assert payload(api.retry(request_id=UNKNOWN_ID)) == no_match


def test_retry_registered(backend: Backend) -> None:
    api = backend.api()
    request_id, _ = _submit(api, "retry")
    payload(api.abort(request_id=request_id))
    result = payload(api.retry(request_id=request_id))
    assert result == [[0, {"message": "Command registered successfully", "status": 0}]]


@pytest.mark.parametrize("command", ["suspend", "resume", "finish", "no_such_command"])
def test_unknown_command(backend: Backend, command: str) -> None:
    ret = getattr(backend.api(), command)(request_id=1)
    assert ret == (0, [False, f"{command} is not a command of iDDS ClientManager"])


def test_relay_down(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandaclient.Client

    dead = _dead_url()
    monkeypatch.setattr(pandaclient.Client, "baseURLSSL", dead)
    monkeypatch.setenv("PANDA_URL_SSL", dead)
    status, text = backend.api().ping()
    assert status == 255
    assert "Connection refused" in str(text)


def _first_row(api: Any, request_id: int) -> dict[str, Any]:
    rows = payload(api.get_requests(request_id=request_id, with_detail=True))
    return rows[0]


def test_replies_agree_in_keys_and_types(backends: dict[str, Backend]) -> None:
    replies: dict[str, dict[str, Any]] = {}
    for name, backend in backends.items():
        with backend.active():
            api = backend.api()
            request_id, _ = _submit(api, f"shape_{name}")
            replies[name] = {
                "ping": api.ping(),
                "submit": api.submit(chain_workflow(unique_name("shape2"))),
                "get_requests_detail": _first_row(api, request_id),
                "get_requests": payload(api.get_requests(request_id=request_id))[0],
                "abort": api.abort(request_id=request_id),
                "abort_unknown": api.abort(request_id=UNKNOWN_ID),
                "unknown_command": api.suspend(request_id=request_id),
            }
    diffs = shape_differences(replies["real"], replies["local"])
    assert diffs == [], "\n".join(diffs)
