# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""A loopback stand-in for the PanDA relay, for timing ``submit``.

It answers panda-client's ``POST .../relay_idds_command`` (gzip JSON body,
no ``Content-Encoding``; doc/wire-protocol.md §2) at once with ``[true, <id>]``
(``{"Status": "OK"}`` for ``ping``), so a timed submit includes the
client-side serialisation, gzip and the HTTP exchange but no server work.
Only after replying does it count the decompressed size of the body. A
``GET /stats`` returns (and forgets) the sizes of the requests seen so far:
``[{"command": ..., "gzip_bytes": ..., "json_bytes": ...}, ...]``.

Run it as a script (``python relay_standin.py --port-file PATH``) to get a
separate server process, or use `RelayStandIn` in-process (tests).
"""

from __future__ import annotations

__all__ = ["RelayStandIn", "main", "relay_environment"]

import argparse
import base64
import json
import os
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RELAY_SUFFIX = "/relay_idds_command"
_FIRST_ID = 1000
_COMMAND = re.compile(rb'"command_name":\s*"([^"+]*)')


def _json_size(body: bytes) -> int:
    """Return the size of a gzip body once decompressed, in bytes.

    Parameters
    ----------
    body : `bytes`
        The gzip body.

    Returns
    -------
    size : `int`
        Decompressed size (``len(body)`` if it is not gzip).
    """
    inflater = zlib.decompressobj(wbits=31)
    size = 0
    try:
        for start in range(0, len(body), 1 << 20):
            size += len(inflater.decompress(body[start : start + (1 << 20)]))
        size += len(inflater.flush())
    except zlib.error:
        return len(body)
    return size


def _command_name(body: bytes) -> str:
    """Return the iDDS command a relay body carries, reading only its head.

    Parameters
    ----------
    body : `bytes`
        The gzip body.

    Returns
    -------
    name : `str`
        The ``command_name`` without any ``+host`` suffix, or ``""``.
    """
    try:
        head = zlib.decompressobj(wbits=31).decompress(body, 4096)
    except zlib.error:
        head = body[:4096]
    match = _COMMAND.search(head)
    return match.group(1).decode() if match else ""


class _Handler(BaseHTTPRequestHandler):
    """Request handler; the server object carries the shared state."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet (the bench reads sizes from ``/stats``)."""

    def _reply(self, code: int, payload: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def do_POST(self) -> None:
        """Answer a relay call, then measure its body."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.path.endswith(RELAY_SUFFIX):
            self._reply(404, b"not found")
            return
        command = _command_name(body)
        result: Any = {"Status": "OK"} if command == "ping" else self.server.next_id()
        self._reply(200, json.dumps([True, result]).encode())
        self.server.record({"command": command, "gzip_bytes": len(body), "json_bytes": _json_size(body)})

    def do_GET(self) -> None:
        """Return and forget the request sizes seen so far."""
        if self.path.rstrip("/").endswith("/stats"):
            self._reply(200, json.dumps(self.server.take_records()).encode(), "application/json")
        else:
            self._reply(404, b"not found")


class _Server(ThreadingHTTPServer):
    """HTTP server holding the request-id counter and the size records."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self._lock = threading.Lock()
        self._next = _FIRST_ID
        self._records: list[dict[str, Any]] = []
        self._pending = 0

    def next_id(self) -> int:
        with self._lock:
            self._next += 1
            self._pending += 1
            return self._next

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(entry)
            if entry["command"] != "ping":
                self._pending -= 1

    def take_records(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while self._pending > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            records, self._records = self._records, []
        return records


class RelayStandIn:
    """The stand-in served from a thread of this process.

    Parameters
    ----------
    port : `int`, optional
        Port on 127.0.0.1; 0 picks a free one.
    """

    def __init__(self, port: int = 0) -> None:
        self._server = _Server(port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port the stand-in listens on (`int`)."""
        return self._server.server_address[1]

    def __enter__(self) -> RelayStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _fake_jwt() -> str:
    """Return an unsigned JWT valid for a day (doc/wire-protocol.md §3)."""

    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    claims = {
        "sub": "bench",
        "name": "Bench User",
        "preferred_username": "bench",
        "exp": int(time.time()) + 86400,
    }
    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}.c2ln"


def relay_environment(port: int, config_root: Path) -> dict[str, str]:
    """Return the environment that points panda-client at the stand-in.

    Writes the OIDC token files panda-client reads under ``config_root``.

    Parameters
    ----------
    port : `int`
        The stand-in's port.
    config_root : `pathlib.Path`
        Existing directory for ``.token`` and ``id_token``.

    Returns
    -------
    env : `dict` [`str`, `str`]
        ``PANDA_*`` / ``OIDC_*`` variables to add to a child's environment.
    """
    token = _fake_jwt()
    (config_root / ".token").write_text(json.dumps({"id_token": token, "refresh_token": "none"}))
    (config_root / "id_token").write_text(token)
    url = f"http://127.0.0.1:{port}/server/panda"
    return {
        "PANDA_URL": url,
        "PANDA_URL_SSL": url,
        "PANDA_BEHIND_REAL_LB": "1",
        "PANDA_AUTH": "oidc",
        "PANDA_AUTH_VO": "Rubin",
        "PANDA_VERIFY_HOST": "off",
        "PANDA_CONFIG_ROOT": str(config_root),
        "OIDC_AUTH_TOKEN_FILE": str(config_root / "id_token"),
    }


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; write the chosen port to ``--port-file``.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    server = _Server(args.port)
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
