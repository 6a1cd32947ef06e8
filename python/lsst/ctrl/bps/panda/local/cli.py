# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``panda-local start|stop|status|env|jobs|watch|monitor``: the local
PanDA service.

Typical use::

    panda-local start            # daemon, state in ~/.lsst/panda-local
    eval "$(panda-local env)"    # PANDA_URL, BPS_WMS_SERVICE_CLASS, ...
    bps submit my_submit.yaml    # including config/bps_local.yaml
    panda-local watch RUN_ID     # progress until the run ends
    panda-local jobs RUN_ID --state failed
    panda-local monitor          # URL of the monitor page
    panda-local stop
"""

from __future__ import annotations

__all__ = ["main"]

import importlib.util
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import click

from .layout import StateLayout, default_state_dir
from .pidfile import ServiceProcess, release_pid_file
from .server import LocalServiceError, ServiceConfig, check_loopback, client_env, read_service_file, serve
from .state_dir import StateDirError, check_token_file, prepare_state_dir

ENTRY_MODULE = "panda_local_entry"
"""Module of the ``panda-local`` console script (defers ``lsst.ctrl.bps``)."""

_STATE_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=default_state_dir,
    show_default="$PANDA_LOCAL_STATE or ~/.lsst/panda-local",
    help="Directory holding the database, token, job directories and logs.",
)


def _layout(state_dir: str) -> StateLayout:
    return StateLayout(os.path.abspath(os.path.expanduser(state_dir)))


def _running_info(layout: StateLayout) -> dict[str, Any] | None:
    info = read_service_file(layout)
    if info is None or not ServiceProcess(int(info.get("pid", 0)), info.get("pid_start_time")).is_running():
        return None
    return info


def _status_json(info: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    from .routes import STATUS_PATH

    host = info["host"] if ":" not in info["host"] else f"[{info['host']}]"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{info['port']}{STATUS_PATH}", timeout=timeout) as reply:
            return json.load(reply)
    except (OSError, ValueError):
        return None


@click.group()
def main() -> None:
    """Run the local PanDA service (relay + iDDS + PanDA on this machine)."""


@main.command()
@_STATE_OPTION
@click.option("--port", type=int, default=None, help="Port; 0 picks a free one. Default: last, else free.")
@click.option("--workers", type=int, default=None, help="Jobs run at once. Default: number of CPUs.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--foreground", is_flag=True, help="Run in this process instead of daemonising.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait until ready.")
@click.option(
    "--db-timeout", type=float, default=30.0, show_default=True,
    help="Seconds a database write waits for a lock held by another process (then it is retried).",
)  # fmt: skip
def start(  # noqa: PLR0913 - click passes one argument per option
    state_dir: str, port: int | None, workers: int | None, host: str, foreground: bool, timeout: float,
    db_timeout: float,
) -> None:  # fmt: skip
    """Start the service and wait until it answers."""
    layout = _layout(state_dir)
    try:
        check_loopback(host)
        config = ServiceConfig(layout.root, host, port, workers or os.cpu_count() or 1, db_timeout)
        prepare_state_dir(layout.root)
        check_token_file(layout.token_file)
        if foreground:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            serve(config)
            return
        info = _daemonise(layout, config, timeout)
    except (LocalServiceError, StateDirError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"Cannot start panda-local in {layout.root}: {exc}") from exc
    click.echo(f"panda-local up at {info['url']} (pid {info['pid']}, state {layout.root})")


def _service_module() -> str:
    # Through the console script's entry module when it is installed: the
    # service then never imports ctrl_bps and the butler (seconds at start).
    if importlib.util.find_spec(ENTRY_MODULE) is not None:
        return ENTRY_MODULE
    return "lsst.ctrl.bps.panda.local.cli"


def _daemonise(layout: StateLayout, config: ServiceConfig, timeout: float) -> dict[str, Any]:
    running = _running_info(layout)
    if running is not None:
        raise LocalServiceError(f"Already running at {running['url']} (pid {running['pid']})")
    argv = [sys.executable, "-m", _service_module(), "start", "--foreground",
            "--state-dir", layout.root, "--host", config.host, "--workers", str(config.workers),
            "--db-timeout", str(config.db_timeout)]  # fmt: skip
    if config.port is not None:
        argv += ["--port", str(config.port)]
    with open(layout.log_file, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalServiceError(
                f"Service exited with status {proc.returncode}: {_last_line(layout.log_file)} "
                f"(log: {layout.log_file})"
            )
        info = read_service_file(layout)
        if info and info.get("pid") == proc.pid and _status_json(info, timeout=2.0) is not None:
            return info
        time.sleep(0.1)
    proc.terminate()
    raise LocalServiceError(f"Service not ready after {timeout} s; see {layout.log_file}")


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(max(0, os.fstat(stream.fileno()).st_size - 4096))
            lines = [line for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"its log cannot be read ({exc.strerror})"
    return lines[-1].strip() if lines else "it wrote nothing to its log"


@main.command()
@_STATE_OPTION
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds before SIGKILL.")
def stop(state_dir: str, timeout: float) -> None:
    """Stop the service and kill its running jobs (rerun at next start)."""
    layout = _layout(state_dir)
    process = ServiceProcess.read(layout.pid_file)
    if process is None or not process.is_running():
        if process is not None and release_pid_file(layout.pid_file, process):
            click.echo(f"panda-local is not running (removed the stale pid file naming pid {process.pid})")
        else:
            click.echo("panda-local is not running")
        return
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = process.is_running()
    if killed:
        os.kill(process.pid, signal.SIGKILL)
        while process.is_running():
            time.sleep(0.1)
    release_pid_file(layout.pid_file, process)
    how = f"killed after {timeout} s" if killed else "stopped"
    click.echo(f"panda-local (pid {process.pid}) {how}")


@main.command()
@_STATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(state_dir: str, as_json: bool) -> None:
    """Say whether the service is up, with URL and counts (exit 3: down)."""
    layout = _layout(state_dir)
    info = _running_info(layout)
    summary = _status_json(info) if info else None
    if as_json:
        click.echo(json.dumps({"status": "up" if summary else "down", "state_dir": layout.root,
                               **(info or {}), **(summary or {})}))  # fmt: skip
    elif summary is None or info is None:
        click.echo(f"panda-local is down (state {layout.root})")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["requests"].items())) or "none"
        click.echo(f"panda-local is up at {info['url']} (pid {info['pid']}, {info['workers']} workers)")
        click.echo(f"requests: {counts}; running jobs: {summary['running_jobs']}")
        if summary.get("fault"):
            click.echo(_fault_line(summary["fault"]))
    if summary is None:
        sys.exit(3)


def _fault_line(fault: dict[str, Any]) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(fault["since"]))
    return (
        f"FAULT: database writes failing since {since} ({fault['failures']} attempts): {fault['error']}; "
        f"nothing new starts; next try in {fault['retry_in']:.0f} s"
    )


@main.command()
@_STATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of shell exports.")
def env(state_dir: str, as_json: bool) -> None:
    """Print the client environment: eval "$(panda-local env)"."""
    layout = _layout(state_dir)
    info = read_service_file(layout)
    if info is None:
        raise click.ClickException(f"No service recorded in {layout.root}; run 'panda-local start' first")
    values = client_env(layout, info["host"], int(info["port"]))
    if as_json:
        click.echo(json.dumps(values))
        return
    for key, value in values.items():
        click.echo(f"export {key}={shlex.quote(value)}")


def _client(state_dir: str) -> Any:
    from .operator_client import OperatorError, ServiceClient

    try:
        return ServiceClient(_layout(state_dir))
    except OperatorError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("run_id", type=int)
@_STATE_OPTION
@click.option("--state", "states", multiple=True, help="Only jobs in this state (e.g. failed); repeatable.")
@click.option("--label", "labels", multiple=True, help="Only jobs of this pipeline label; repeatable.")
def jobs(run_id: int, state_dir: str, states: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """List a run's jobs: label, bps name, state, attempts, exit, stderr."""
    from .operator_client import OperatorError, format_jobs

    try:
        rows = _client(state_dir).get(f"/runs/{run_id}/jobs")
    except OperatorError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in format_jobs(rows, states, labels):
        click.echo(line)


@main.command()
@click.argument("run_id", type=int)
@_STATE_OPTION
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls.")
def watch(run_id: int, state_dir: str, interval: float) -> None:
    """Show progress until the run ends; exit 0 only if it SUCCEEDED."""
    from .operator_client import OperatorError, watch_run

    client = _client(state_dir)
    try:
        code = watch_run(client, run_id, interval, click.echo, bar=sys.stdout.isatty())
    except OperatorError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


@main.command()
@_STATE_OPTION
def monitor(state_dir: str) -> None:
    """Print the URL of the monitor page (it carries the service's token)."""
    click.echo(_client(state_dir).monitor_url())


if __name__ == "__main__":
    main()
