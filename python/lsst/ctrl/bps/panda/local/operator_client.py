# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Client side of ``panda-local jobs|watch|monitor``.

Talks to the running service's operator routes with its token (standard
library only: no panda-client import, so the commands start fast).
"""

from __future__ import annotations

__all__ = ["OperatorError", "ServiceClient", "format_jobs", "progress_line", "watch_run"]

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from .auth import read_token
from .layout import StateLayout
from .naming import STATE_ORDER
from .routes import API_PATH, MONITOR_PATH
from .server import read_service_file

_BAR_WIDTH = 30


class OperatorError(RuntimeError):
    """The service is down, the run is unknown, or a reply is bad."""


class ServiceClient:
    """The operator routes of the service recorded in a state directory.

    Parameters
    ----------
    layout : `StateLayout`
        The service's state directory.

    Raises
    ------
    OperatorError
        If no service or token is recorded there.
    """

    def __init__(self, layout: StateLayout) -> None:
        info = read_service_file(layout)
        token = read_token(layout.token_file)
        if info is None or token is None:
            raise OperatorError(f"No service recorded in {layout.root}; run 'panda-local start' first")
        host = f"[{info['host']}]" if ":" in info["host"] else info["host"]
        self.base = f"http://{host}:{info['port']}"
        self.token = token.id_token
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def monitor_url(self) -> str:
        """Return the monitor URL carrying the token (for a browser)."""
        return f"{self.base}{MONITOR_PATH}?{urllib.parse.urlencode({'token': self.token})}"

    def get(self, path: str, timeout: float = 30.0) -> Any:
        """Return the JSON reply of an operator route.

        Parameters
        ----------
        path : `str`
            Path below ``/panda-local/api``, e.g. ``/runs/3/jobs``.
        timeout : `float`, optional
            Seconds.

        Returns
        -------
        reply : `typing.Any`
            The decoded JSON.

        Raises
        ------
        OperatorError
            If the service cannot be reached or answers with an error.
        """
        request = urllib.request.Request(
            f"{self.base}{API_PATH}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with self._opener.open(request, timeout=timeout) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail)["error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise OperatorError(f"{detail} (HTTP {exc.code})") from exc
        except (OSError, ValueError) as exc:
            raise OperatorError(f"Cannot reach the service at {self.base}: {exc}") from exc


def format_jobs(
    jobs: Iterable[dict[str, Any]], states: Iterable[str] = (), labels: Iterable[str] = ()
) -> list[str]:
    """Return ``panda-local jobs`` output lines.

    Parameters
    ----------
    jobs : iterable of `dict`
        Rows of ``/runs/{id}/jobs``.
    states : iterable of `str`, optional
        Keep only these states (any case, e.g. ``failed``).
    labels : iterable of `str`, optional
        Keep only these labels.

    Returns
    -------
    lines : `list` [`str`]
        A header and one tab-separated line per job: label, bps job name,
        state, attempts, exit code, stderr path.
    """
    wanted = {state.upper() for state in states}
    chosen = set(labels)
    lines = ["LABEL\tJOB\tSTATE\tATTEMPTS\tEXIT\tSTDERR"]
    for job in jobs:
        if (wanted and job["state"] not in wanted) or (chosen and job["label"] not in chosen):
            continue
        exit_code = "-" if job["exit_code"] is None else str(job["exit_code"])
        lines.append(
            f"{job['label']}\t{job['job_name']}\t{job['state']}\t{job['attempts']}\t{exit_code}\t"
            f"{job['stderr'] or '-'}"
        )
    return lines


def _elapsed(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(run: dict[str, Any], bar: bool) -> str:
    """Return one progress line of a run.

    Parameters
    ----------
    run : `dict`
        A run as ``/runs/{id}`` returns it.
    bar : `bool`
        Include a progress bar (on a terminal).

    Returns
    -------
    line : `str`
        ``run <id> <status> <elapsed> [bar] <done>/<total> <state> <n>, ...``.
    """
    counts = run["counts"]
    total = run["total"]
    ended = sum(counts.get(name, 0) for name in ("SUCCEEDED", "FAILED", "PRUNED", "DELETED"))
    summary = ", ".join(f"{name} {counts[name]}" for name in STATE_ORDER if counts.get(name))
    drawn = ""
    if bar and total:
        filled = round(_BAR_WIDTH * ended / total)
        drawn = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
    return (
        f"run {run['request_id']} {run['status']} {_elapsed(run['elapsed'])} {drawn}{ended}/{total} {summary}"
    )


def watch_run(  # noqa: PLR0913 - injected output and clock keep it testable
    client: ServiceClient,
    request_id: int,
    interval: float,
    echo: Callable[[str], None],
    bar: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print a progress line whenever the run's counts change, until it ends.

    Parameters
    ----------
    client : `ServiceClient`
        The service.
    request_id : `int`
        The run.
    interval : `float`
        Seconds between polls.
    echo : callable
        Prints one line.
    bar : `bool`
        Draw a progress bar.
    sleep : callable, optional
        Waits between polls.

    Returns
    -------
    exit_code : `int`
        0 when the run SUCCEEDED (request ``Finished``), else 1.
    """
    last: tuple[str, dict[str, int]] | None = None
    while True:
        run = client.get(f"/runs/{request_id}")["run"]
        state = (run["status"], run["counts"])
        if state != last:
            echo(f"[{time.strftime('%H:%M:%S')}] {progress_line(run, bar)}")
            last = state
        if not run["active"]:
            break
        sleep(interval)
    if run["status"] == "Finished":
        echo(f"run {request_id} SUCCEEDED")
        return 0
    failed = run["counts"].get("FAILED", 0)
    echo(f"run {request_id} ended {run['status']} ({failed} failed job(s)); "
         f"see: panda-local jobs {request_id} --state failed")  # fmt: skip
    return 1
