# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Assemble and run one service instance (in the foreground)."""

from __future__ import annotations

__all__ = [
    "LocalServiceError",
    "ServiceConfig",
    "check_loopback",
    "client_env",
    "pid_alive",
    "read_service_file",
    "serve",
]

import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from lsst.ctrl.bps.panda.constants import PANDA_SERVER_PATH

from .auth import ensure_token
from .layout import StateLayout
from .pidfile import ServiceProcess, claim_pid_file, pid_alive, release_pid_file
from .state_dir import StateDirError, check_token_file, prepare_state_dir

_LOG = logging.getLogger(__name__)

DEFAULT_VO = "Rubin"
"""``PANDA_AUTH_VO`` given to clients (sent as ``Origin``; not checked)."""


DECODER_VARIABLE = "PANDA_LOCAL_DECODER"
"""Job environment variable: path of the edge-node decoder script."""

DECODER_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edgenode", "cmd_line_decoder.py"
)
"""This package's decoder, as a file (``config/bps_local.yaml`` runs it)."""

WMS_SERVICE_CLASS = "lsst.ctrl.bps.panda.PanDAService"
"""``BPS_WMS_SERVICE_CLASS`` given to clients: ``bps report|status|cancel|
restart|ping`` without a submit file use this plugin."""

PACKAGE_DIR_VARIABLE = "CTRL_BPS_PANDA_DIR"
"""Directory whose ``config/`` holds the site overlays (``bps_local.yaml``)."""


def package_dir() -> str:
    """Return the value of ``CTRL_BPS_PANDA_DIR`` for clients.

    Returns
    -------
    path : `str`
        ``$CTRL_BPS_PANDA_DIR`` when set, else this installed package's
        directory, as ``ctrl_bps_panda_dir`` prints it (its ``config/``
        holds ``bps_local.yaml``).
    """
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get(PACKAGE_DIR_VARIABLE) or here


class LocalServiceError(RuntimeError):
    """The local service cannot be started, reached or stopped."""


@dataclass(frozen=True)
class ServiceConfig:
    """How to run one service instance."""

    state_dir: str
    host: str = "127.0.0.1"
    port: int | None = None
    """`None`: reuse the last recorded port if free, else pick one; 0: pick."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    db_timeout: float = 30.0
    """Seconds a database write waits for a lock held by another process."""


def check_loopback(host: str) -> str:
    """Refuse any address that is not loopback.

    Parameters
    ----------
    host : `str`
        ``127.0.0.1``, ``::1``, ``localhost`` or another loopback address.

    Returns
    -------
    host : `str`
        The numeric address to bind.

    Raises
    ------
    LocalServiceError
        For any other host.
    """
    address = "127.0.0.1" if host == "localhost" else host
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LocalServiceError(
            f"Refusing to listen on {host!r}: the local PanDA service binds to loopback only (e.g. 127.0.0.1)"
        )
    return address


def base_url(host: str, port: int) -> str:
    """Return ``http://<host>:<port>/server/panda``.

    Parameters
    ----------
    host : `str`
        Numeric loopback address.
    port : `int`
        Port.

    Returns
    -------
    url : `str`
        The value of ``PANDA_URL``/``PANDA_URL_SSL``.
    """
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}{PANDA_SERVER_PATH}"


def client_env(layout: StateLayout, host: str, port: int) -> dict[str, str]:
    """Return the environment panda-client needs to use this service.

    Parameters
    ----------
    layout : `StateLayout`
        State directory layout.
    host : `str`
        Bound address.
    port : `int`
        Bound port.

    Returns
    -------
    env : `dict` [`str`, `str`]
        ``PANDA_URL``, ``PANDA_URL_SSL``, ``PANDACACHE_URL``,
        ``PANDA_BEHIND_REAL_LB``, ``PANDA_CONFIG_ROOT``, ``PANDA_AUTH``,
        ``PANDA_AUTH_VO``, ``PANDA_VERIFY_HOST``, ``BPS_WMS_SERVICE_CLASS``
        and ``CTRL_BPS_PANDA_DIR`` (see `package_dir`).
    """
    url = base_url(host, port)
    return {
        "PANDA_URL": url,
        "PANDA_URL_SSL": url,
        "PANDACACHE_URL": url,
        "PANDA_BEHIND_REAL_LB": "1",
        "PANDA_CONFIG_ROOT": layout.config_root,
        "PANDA_AUTH": "oidc",
        "PANDA_AUTH_VO": DEFAULT_VO,
        "PANDA_VERIFY_HOST": "off",
        "BPS_WMS_SERVICE_CLASS": WMS_SERVICE_CLASS,
        PACKAGE_DIR_VARIABLE: package_dir(),
    }


def job_env(client: dict[str, str]) -> dict[str, str]:
    """Return the base environment of every job.

    The service's own environment, the client exports (so a job can talk
    to the service), this Python's ``bin`` directory first on ``PATH`` so
    that ``python3`` in ``runnerCommand`` is the service's Python, and
    `DECODER_VARIABLE` naming this package's edge-node decoder file (run by
    path, it starts without importing ``lsst.ctrl.bps``).

    Parameters
    ----------
    client : `dict` [`str`, `str`]
        Output of `client_env`.

    Returns
    -------
    env : `dict` [`str`, `str`]
        The environment.
    """
    env = dict(os.environ)
    env.update(client)
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", os.defpath)])
    env[DECODER_VARIABLE] = DECODER_PATH
    return env


def read_service_file(layout: StateLayout) -> dict[str, Any] | None:
    """Read ``service.json`` (pid, host, port, url) if present.

    Parameters
    ----------
    layout : `StateLayout`
        State directory layout.

    Returns
    -------
    info : `dict` or `None`
        The recorded values.
    """
    try:
        with open(layout.service_file) as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def _write_json(path: str, data: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(path + ".tmp", path)


def _bind(host: str, port: int | None, layout: StateLayout) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port is not None else []
    if port is None:
        previous = read_service_file(layout)
        candidates = [int(previous["port"]), 0] if previous and previous.get("port") else [0]
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if candidate == candidates[-1]:
                raise LocalServiceError(f"Cannot listen on {host}:{candidate}: {exc}") from exc
            continue
        sock.listen(128)
        return sock
    raise LocalServiceError(f"No port to listen on at {host}")


def _claim_pid_file(layout: StateLayout) -> None:
    owner = claim_pid_file(layout.pid_file)
    if owner is not None:
        raise LocalServiceError(f"A service already runs on {layout.root} (pid {owner.pid})")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # uvicorn re-raises the SIGTERM it caught once it has shut down; exit
    # through SystemExit then, so that the pid file is removed.
    raise SystemExit(128 + signum)


def serve(config: ServiceConfig) -> None:
    """Run the service until SIGTERM/SIGINT.

    Parameters
    ----------
    config : `ServiceConfig`
        What to run.

    Raises
    ------
    LocalServiceError
        If the host is not loopback, the port is taken, another instance
        owns the state directory, the state directory cannot be used or the
        token file is writable by others.
    """
    host = check_loopback(config.host)
    layout = StateLayout(os.path.abspath(config.state_dir))
    try:
        prepare_state_dir(layout.root)
        check_token_file(layout.token_file)
    except StateDirError as exc:
        raise LocalServiceError(str(exc)) from exc
    _claim_pid_file(layout)
    me = ServiceProcess.current()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _run(config, layout, host, me)
    finally:
        release_pid_file(layout.pid_file, me)


def _run(config: ServiceConfig, layout: StateLayout, host: str, me: ServiceProcess) -> None:
    import uvicorn

    from .app import build_app
    from .commands import CommandSet
    from .rows import RowBuilder
    from .runner import Runner
    from .store import Store

    sock = _bind(host, config.port, layout)
    port = sock.getsockname()[1]
    token = ensure_token(layout.token_file)
    store = Store(layout.database, config.db_timeout)
    runner = Runner(store, layout.root, config.workers, job_env(client_env(layout, host, port)))
    info = {"pid": me.pid, "pid_start_time": me.start_time, "host": host, "port": port,
            "url": base_url(host, port), "state_dir": layout.root, "workers": runner.workers,
            "started_at": time.time()}  # fmt: skip

    def started() -> None:
        runner.start()
        _write_json(layout.service_file, info)
        _LOG.info("panda-local on %s (pid %d, %d workers)", info["url"], me.pid, runner.workers)

    def stopped() -> None:
        runner.stop()
        store.close()
        release_pid_file(layout.pid_file, me)
        _LOG.info("panda-local stopped")

    from .cache import FileCache

    commands = CommandSet(store, runner, RowBuilder(layout))
    app = build_app(commands, token, started, stopped, FileCache(layout.cache_dir))
    uv_config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30
    )
    uvicorn.Server(uv_config).run(sockets=[sock])
