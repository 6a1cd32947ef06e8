# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Every relay call is bounded: a relay that never answers.

A loopback listener accepts connections and never answers (nor closes
them), as a hung relay or a stuck load balancer does. Every `PanDAService`
command and ``bps status`` itself must come back within the configured
bound, not panda-client's 600 s x retries, with a message naming
host:port and the key that sets the bound.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_helpers import prepare, shell_workflow

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.exceptions import PanDAConfigError, RelayTimeoutError
from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport, transport_from_config
from lsst.ctrl.bps.panda.service_settings import RelayTimeouts, relay_timeouts

pytestmark = pytest.mark.timeout(300)

READ = 1.5
"""Read bound the tests set (seconds)."""

SLACK = 8.0
"""Allowed time beyond the bound (a loaded machine)."""


class SilentRelay:
    """Accepts every connection on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.socket.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SilentRelay]:
    relay = SilentRelay()
    url = f"http://127.0.0.1:{relay.port}/server/panda"
    monkeypatch.setenv("PANDA_URL", url)
    monkeypatch.setenv("PANDA_URL_SSL", url)
    monkeypatch.delenv("PANDA_AUTH", raising=False)
    monkeypatch.setenv("CTRL_BPS_PANDA_READ_TIMEOUT", str(READ))
    monkeypatch.setenv("CTRL_BPS_PANDA_SUBMIT_TIMEOUT", str(READ))
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))
    try:
        yield relay
    finally:
        relay.close()


def _timed(call: object, *args: object) -> tuple[object, float]:
    start = time.monotonic()
    result = call(*args)  # type: ignore[operator]
    return result, time.monotonic() - start


def test_every_service_command_returns_within_the_bound(silent: SilentRelay) -> None:
    service = PanDAService({})  # as bps report/status/cancel/restart/ping build it
    where = f"127.0.0.1:{silent.port} did not answer within {READ:g} s"
    calls = {
        "status": (service.get_status, "1"),
        "report": (service.report, "1"),
        "cancel": (service.cancel, "1"),
        "restart": (service.restart, "1"),
        "ping": (service.ping,),
    }
    for what, (call, *args) in calls.items():
        result, elapsed = _timed(call, *args)
        assert elapsed < READ + SLACK, f"{what} took {elapsed:.1f} s"
        message = str(result)
        assert where in message and "CTRL_BPS_PANDA_READ_TIMEOUT" in message, (what, message)
    assert service.get_status("1")[0] is WmsStates.UNKNOWN
    assert service.ping()[0] == 2  # unreachable


def test_read_only_calls_not_retried_after_a_timeout(silent: SilentRelay) -> None:
    transport = PanDARelayTransport(timeouts=RelayTimeouts(connect=5, read=0.5, submit=0.5))
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError, match=f"127.0.0.1:{silent.port} did not answer within 0.5 s"):
        transport.get_requests(1, with_detail=True)
    assert time.monotonic() - start < 0.5 + SLACK
    assert len(silent.held) == 1, "one connection: no retry"


def test_submit_bounded_and_not_retried(silent: SilentRelay, tmp_path: Path) -> None:
    service, prepared = prepare(tmp_path, shell_workflow("run_silent", {"job": "true"}))
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError, match=f"127.0.0.1:{silent.port}.*relaySubmitTimeout") as caught:
        service.submit(prepared)
    assert time.monotonic() - start < READ + SLACK
    assert "may still have been created" in str(caught.value)
    assert prepared.run_id is None and len(silent.held) == 1


def test_bps_status_command_returns_naming_the_host(silent: SilentRelay) -> None:
    env = dict(os.environ, BPS_WMS_SERVICE_CLASS="lsst.ctrl.bps.panda.PanDAService")
    bps = Path(sys.executable).with_name("bps")
    start = time.monotonic()
    done = subprocess.run(
        [str(bps), "status", "--id", "3"], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert f"127.0.0.1:{silent.port} did not answer" in done.stdout + done.stderr, done.stdout + done.stderr
    assert elapsed < 60, f"bps status took {elapsed:.0f} s"


def test_connect_timeout_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener whose accept queue is full drops new connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; later SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/server/panda"
        monkeypatch.setenv("PANDA_URL", url)
        monkeypatch.setenv("PANDA_URL_SSL", url)
        monkeypatch.delenv("PANDA_AUTH", raising=False)
        transport = PanDARelayTransport(timeouts=RelayTimeouts(connect=0.5, read=30, submit=30))
        start = time.monotonic()
        with pytest.raises(RelayTimeoutError, match=f"127.0.0.1:{port} accepted no connection within 0.5 s"):
            transport.ping()
        assert time.monotonic() - start < 0.5 + SLACK
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def test_bounds_from_defaults_config_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("CTRL_BPS_PANDA_CONNECT_TIMEOUT", "CTRL_BPS_PANDA_READ_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("CTRL_BPS_PANDA_SUBMIT_TIMEOUT", raising=False)
    defaults = relay_timeouts({})
    assert defaults == RelayTimeouts(connect=30, read=120, submit=600)
    assert transport_from_config({"relayReadTimeout": 7}).timeouts.read == 7
    monkeypatch.setenv("CTRL_BPS_PANDA_READ_TIMEOUT", "9")
    assert relay_timeouts({"relayReadTimeout": 7}).read == 9
    monkeypatch.setenv("CTRL_BPS_PANDA_READ_TIMEOUT", "soon")
    with pytest.raises(PanDAConfigError, match="CTRL_BPS_PANDA_READ_TIMEOUT"):
        relay_timeouts({})
    monkeypatch.delenv("CTRL_BPS_PANDA_READ_TIMEOUT")
    with pytest.raises(PanDAConfigError, match="relayConnectTimeout"):
        relay_timeouts({"relayConnectTimeout": 0})
