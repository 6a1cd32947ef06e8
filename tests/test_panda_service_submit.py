# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``PanDAService.prepare`` + ``submit`` against a loopback HTTP relay.

The relay here answers every POST with a reply chosen by the test (HTTP
status and body, as the real relay or its web server would send them) and
keeps each request body, so the tests assert what reached the wire and how
every reply shape of doc/wire-protocol.md §5 reaches the caller: one
package error carrying the server's text, ``run_id`` left unset, and the
submit never retried.
"""

from __future__ import annotations

import gc
import gzip
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from idds.common.utils import json_loads

from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.constants import RELAY_PATH
from lsst.ctrl.bps.panda.exceptions import (
    IDDSRequestError,
    PanDABpsError,
    PanDAConfigError,
    PanDAUnreachableError,
)
from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport, RetryPolicy
from lsst.ctrl.bps.panda.submit_record import SubmitRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_helpers import make_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from synthetic_workflow import build_workflow


class _Relay(ThreadingHTTPServer):
    """A loopback relay with a settable reply; records request bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply: tuple[int, str] = (200, "[true, 7]")
        self.bodies: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Relay

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(
            {"path": self.path, "type": self.headers["Content-Type"], "doc": json.loads(gzip.decompress(raw))}
        )
        code, text = self.server.reply
        payload = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Relay]:
    server = _Relay()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/server/panda"
    for name in ("PANDA_URL", "PANDA_URL_SSL"):
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("PANDA_AUTH", raising=False)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _service() -> PanDAService:
    transport = PanDARelayTransport(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    return PanDAService({}, transport=transport)


def _prepare(tmp_path: Path, service: PanDAService, **values: Any) -> Any:
    workflow = build_workflow(60, tmp_path)
    config = make_config(tmp_path, fileDistributionEndPoint=f"file://{tmp_path}/dist/", **values)
    return service.prepare(config, workflow, str(tmp_path / "submit"))


def _inside(function: str) -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def test_prepare_encodes_with_the_collector_paused(tmp_path: Path) -> None:
    # With a threshold of 1 the collector would run at nearly every
    # allocation; prepare pauses it while the request is encoded (the one
    # pause) and restores it.
    inside: list[str] = []
    outside: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            # The encoding's two halves (the with statement's own entry
            # and exit are outside the pause).
            encoding = _inside("_build_workflow") or _inside("encode_workflow")
            (inside if encoding else outside).append(phase)

    workflow = build_workflow(60, tmp_path)
    config = make_config(tmp_path, fileDistributionEndPoint=f"file://{tmp_path}/dist/")
    service, out_prefix = _service(), str(tmp_path / "submit")
    thresholds = gc.get_threshold()
    gc.callbacks.append(count)
    gc.set_threshold(1)
    try:
        prepared = service.prepare(config, workflow, out_prefix)
        assert gc.isenabled()
        [list(range(3)) for _ in range(100)]  # enabled again: the collector runs
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*thresholds)
    assert prepared.request.text
    assert inside == []
    assert len(outside) > 0


def test_submit_success_what_reached_the_wire(tmp_path: Path, relay: _Relay) -> None:
    service = _service()
    prepared = _prepare(tmp_path, service)
    service.submit(prepared)
    assert prepared.run_id == "7"
    assert SubmitRecord.read(tmp_path / "submit").run_id == 7
    for target in prepared.files_to_stage:
        assert (tmp_path / "dist" / target).is_file(), target
    (body,) = relay.bodies
    assert body["path"] == RELAY_PATH and body["type"] == "application/json"
    doc = body["doc"]
    assert doc["command_name"] == "submit" and doc["manager"] is True
    sent = json_loads(doc["kwargs"])["workflow"]
    sent_works = {work.task_name: work for work in sent.template.works.values()}
    ours = {work.task_name: work for work in prepared.idds_workflow.template.works.values()}
    assert sent_works.keys() == ours.keys()
    for name, work in ours.items():
        assert sent_works[name].dependency_map == work.dependency_map, name
        assert sent_works[name].executable == work.executable, name


def test_submit_split_into_steps(tmp_path: Path, relay: _Relay) -> None:
    relay.reply = (200, "[true, 0]")
    service = _service()
    prepared = _prepare(tmp_path, service, maxRequestLength=20_000)
    with pytest.raises(IDDSRequestError, match="submit"):
        service.submit(prepared)  # the main request must get a positive id
    steps = [body["doc"] for body in relay.bodies]
    assert len(steps) > 1 and all(step["command_name"] == "submit" for step in steps)
    assert prepared.run_id is None


@pytest.mark.parametrize(
    ("code", "text", "error", "match"),
    [
        (200, '[false, "SSL secure connection is required"]', IDDSRequestError, "SSL secure connection"),
        (200, '[true, [false, "Database exception: relation does not exist"]]', IDDSRequestError, "Database"),
        (
            200,
            "[false, \"failed to execute command with No section: 'rest'\"]",
            IDDSRequestError,
            "No section",
        ),
        (200, '[true, "not an id"]', IDDSRequestError, "not an id"),
        (200, "<html>maintenance</html>", IDDSRequestError, "maintenance"),
        (403, "ERROR : Token authentication failed. Invalid token", IDDSRequestError, "Token authentication"),
        (500, "Internal Server Error", PanDAUnreachableError, "Internal Server Error"),
        (502, "<title>502 Bad Gateway</title>", PanDAUnreachableError, "Bad Gateway"),
    ],
)
def test_submit_error_envelopes(
    tmp_path: Path, relay: _Relay, code: int, text: str, error: type[Exception], match: str
) -> None:
    relay.reply = (code, text)
    service = _service()
    prepared = _prepare(tmp_path, service)
    with pytest.raises(error, match=match) as caught:
        service.submit(prepared)
    assert isinstance(caught.value, IDDSRequestError) and caught.value.operation == "submit"
    assert len(relay.bodies) == 1, "submit must never be retried"
    assert prepared.run_id is None
    assert SubmitRecord.read(tmp_path / "submit").run_id is None


def test_submit_relay_down(tmp_path: Path, relay: _Relay) -> None:
    service = _service()
    prepared = _prepare(tmp_path, service)
    relay.shutdown()
    relay.server_close()
    with pytest.raises(PanDAUnreachableError, match="(?i)refused"):
        service.submit(prepared)
    assert prepared.run_id is None


def test_submit_refuses_remote_build_and_foreign_workflows(relay: _Relay) -> None:
    service = _service()
    with pytest.raises(PanDAConfigError, match="remoteBuild.enabled"):
        service.submit(None, remote_build={"enabled": True}, config_file="x.yaml", compute_site="SITE")
    with pytest.raises(PanDABpsError, match="PanDAService.prepare"):
        service.submit(object())
    assert relay.bodies == []
