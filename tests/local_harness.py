# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Helpers to drive a local PanDA service from tests and benchmarks.

`LocalService` starts and stops a ``panda-local`` daemon in its own state
directory on a free loopback port; `RelayClient` talks to it through the real
panda-client iDDS API, exactly as the plugin does; `build_workflow` makes a
real idds `Workflow` of `DomaPanDAWork` from a compact description (`FINAL`
names a final job). Jobs made with `log_cmd` log their start and end to a
file (read with `logged_events`), so what ran, and how often, is seen from
outside the service; `wait_for` polls for a condition.
"""

from __future__ import annotations

__all__ = [
    "FINAL",
    "JobDef",
    "LocalService",
    "RelayClient",
    "WorkDef",
    "build_workflow",
    "log_cmd",
    "logged_events",
    "wait_for",
]

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsst.ctrl.bps.panda.constants import RETRY_UNLESS_EXIT_ATTRIBUTE
from lsst.ctrl.bps.panda.idds_model import REQUEST_TERMINAL, names
from lsst.ctrl.bps.panda.local.layout import StateLayout
from lsst.ctrl.bps.panda.local.server import pid_alive, read_service_file

_TERMINAL_REQUEST = names(REQUEST_TERMINAL)

FINAL = "pure_pseudoinput+qgraphNodeId:+qgraphId:"
"""Pseudo input name of a final job, as the plugin makes it."""


def log_cmd(log: Path, body: str = "") -> str:
    """Return a job command logging its start and end around ``body``.

    Parameters
    ----------
    log : `pathlib.Path`
        File the job appends ``start <name>`` and ``end <name>`` to (the
        name from ``${IN/L}``).
    body : `str`, optional
        Shell commands between, each ending with ``;``.

    Returns
    -------
    command : `str`
        The bash command.
    """
    return f'echo "start ${{IN/L}}" >> {log}; {body} echo "end ${{IN/L}}" >> {log}'


def logged_events(log: Path) -> list[tuple[str, str]]:
    """Return the ``(event, job name)`` lines a `log_cmd` job wrote.

    Parameters
    ----------
    log : `pathlib.Path`
        The log file (absent: no events).

    Returns
    -------
    events : `list` [`tuple` [`str`, `str`]]
        ``("start" or "end", job name)`` in the order written.
    """
    if not log.exists():
        return []
    return [(event, name) for event, name in (line.split(" ", 1) for line in log.read_text().splitlines())]


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll until a condition holds.

    Parameters
    ----------
    predicate : `~collections.abc.Callable`
        The condition, polled every 0.05 s.
    timeout : `float`, optional
        Seconds before giving up.

    Returns
    -------
    value : `typing.Any`
        The first true value the predicate returned.

    Raises
    ------
    TimeoutError
        If it is still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


@dataclass(frozen=True)
class JobDef:
    """One job: its pseudo input name and its parents.

    ``deps`` holds ``(task name, job name)`` pairs.
    """

    name: str
    deps: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WorkDef:
    """One work (task): a bash executable shared by its jobs."""

    task_name: str
    executable: str
    jobs: tuple[JobDef, ...] = ()
    max_attempt: int = 1
    core_count: int = 1
    final_of: tuple[str, ...] = field(default=())
    """Task names whose termination releases this work (its AndCondition)."""
    retry_unless_exit: tuple[int, ...] = ()
    """Exit codes ending a job without another attempt (sent as the work
    attribute the plugin uses)."""


def build_workflow(name: str, works: list[WorkDef]) -> Any:
    """Build a real idds workflow of `DomaPanDAWork`.

    Parameters
    ----------
    name : `str`
        Workflow name.
    works : `list` [`WorkDef`]
        The works; a work with ``final_of`` is gated by an ``AndCondition``
        on ``is_terminated`` of the named works.

    Returns
    -------
    workflow : `idds.workflowv2.workflow.Workflow`
        The workflow, ready for ``submit``.
    """
    from idds.doma.workflowv2.domapandawork import DomaPanDAWork
    from idds.workflowv2.workflow import AndCondition, Workflow

    workflow = Workflow(name=name)
    built: dict[str, Any] = {}
    for spec in works:
        dependency_map = [
            {
                "name": job.name,
                "order_id": index,
                "dependencies": [
                    {"task": task, "inputname": job_name, "available": False} for task, job_name in job.deps
                ],
            }  # fmt: skip
            for index, job in enumerate(spec.jobs)
        ]
        work = DomaPanDAWork(
            executable=spec.executable, task_name=spec.task_name, dependency_map=dependency_map,
            task_queue="LOCAL", task_site="LOCAL", task_cloud="LOCAL", maxattempt=spec.max_attempt,
            num_retries=spec.max_attempt, core_count=spec.core_count, vo="Rubin",
            encode_command_line=False, prodSourceLabel="managed", task_type="test",
        )  # fmt: skip
        if spec.retry_unless_exit:
            setattr(work, RETRY_UNLESS_EXIT_ATTRIBUTE, list(spec.retry_unless_exit))
        built[spec.task_name] = work
        workflow.add_work(work)
    for spec in works:
        if spec.final_of:
            condition = AndCondition(
                conditions=[built[task].is_terminated for task in spec.final_of],
                true_works=[built[spec.task_name]],
            )
            workflow.add_condition(condition)
    return workflow


class RelayClient:
    """The panda-client iDDS API pointed at one local service.

    panda-client keeps its server URL in module globals read at import
    time; this class sets them (and the ``PANDA_*`` variables) for the time
    of each call only, so several services can be used from one process in
    turn and nothing leaks into the rest of the process.

    Parameters
    ----------
    exports : `dict` [`str`, `str`]
        The ``panda-local env --json`` values.
    """

    def __init__(self, exports: dict[str, str]) -> None:
        self.exports = dict(exports)

    @contextmanager
    def _environment(self) -> Iterator[Any]:
        saved = {key: os.environ.get(key) for key in self.exports}
        os.environ.update(self.exports)
        import idds.common.utils
        from pandaclient import Client, idds_api

        urls = (Client.baseURL, Client.baseURLSSL)
        Client.baseURL = self.exports["PANDA_URL"]
        Client.baseURLSSL = self.exports["PANDA_URL_SSL"]
        try:
            yield idds_api.get_api(idds.common.utils.json_dumps, compress=True, manager=True)
        finally:
            Client.baseURL, Client.baseURLSSL = urls
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def call(self, command: str, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """Call a ClientManager command through the relay.

        The process environment and panda-client's URLs are restored after
        the call.

        Parameters
        ----------
        command : `str`
            Command name, e.g. ``get_requests``.
        *args : `typing.Any`
            Positional arguments.
        **kwargs : `typing.Any`
            Keyword arguments.

        Returns
        -------
        reply : `tuple` [`int`, `typing.Any`]
            What panda-client returns: ``(0, [flag, payload])`` or
            ``(255, text)``.
        """
        with self._environment() as api:
            return getattr(api, command)(*args, **kwargs)

    def result(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """Call a command and return the ClientManager result.

        Parameters
        ----------
        command : `str`
            Command name.
        *args : `typing.Any`
            Positional arguments.
        **kwargs : `typing.Any`
            Keyword arguments.

        Returns
        -------
        result : `typing.Any`
            ``payload[1]`` of a ``(0, [True, payload])`` reply.

        Raises
        ------
        RuntimeError
            For any other reply.
        """
        status, payload = self.call(command, *args, **kwargs)
        if status != 0 or not isinstance(payload, list) or payload[0] is not True:
            raise RuntimeError(f"{command} failed: {status} {payload!r}")
        return payload[1]

    def request_status(self, request_id: int) -> str | None:
        """Return the request's status name, `None` if unknown.

        Parameters
        ----------
        request_id : `int`
            The request.

        Returns
        -------
        status : `str` or `None`
            E.g. ``Transforming``.
        """
        rows = self.result("get_requests", request_id=request_id)
        return rows[0]["status"]["attributes"]["_name_"] if rows else None

    def wait(self, request_id: int, timeout: float = 60.0, interval: float = 0.2) -> str:
        """Poll until the request terminates.

        Parameters
        ----------
        request_id : `int`
            The request.
        timeout : `float`, optional
            Seconds before giving up.
        interval : `float`, optional
            Seconds between polls.

        Returns
        -------
        status : `str`
            The terminal status name.

        Raises
        ------
        TimeoutError
            If it is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.request_status(request_id)
            if status in _TERMINAL_REQUEST:
                return status
            time.sleep(interval)
        raise TimeoutError(f"Request {request_id} still {status} after {timeout} s")

    def jobs(self, request_id: int) -> dict[str, dict[str, Any]]:
        """Return every job's content row, keyed by job (pseudo input) name.

        Parameters
        ----------
        request_id : `int`
            The request.

        Returns
        -------
        jobs : `dict` [`str`, `dict`]
            ``get_contents_output_ext`` rows of all released transforms.
        """
        groups = self.result("get_contents_output_ext", request_id=request_id)
        return {row["name"]: row for rows in groups.values() for row in rows}


class LocalService:
    """A ``panda-local`` daemon in a state directory of its own.

    Parameters
    ----------
    state_dir : `str`
        State directory (created if needed).
    workers : `int`, optional
        Jobs run at once.
    port : `int`, optional
        Port; 0 picks a free one.
    start_args : `tuple` [`str`, ...], optional
        More ``panda-local start`` options, e.g. ``("--db-timeout", "1")``.
    """

    def __init__(
        self, state_dir: str, workers: int = 2, port: int = 0, start_args: tuple[str, ...] = ()
    ) -> None:
        self.layout = StateLayout(os.path.abspath(state_dir))
        self.workers = workers
        self.port = port
        self.start_args = start_args

    def _cli(self, *args: str, timeout: float = 120.0) -> str:
        argv = [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli", *args, "--state-dir", self.layout.root]
        env = dict(os.environ, PANDA_BEHIND_REAL_LB="1")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"panda-local {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def start(self) -> LocalService:
        """Start the daemon and wait until it answers.

        Returns
        -------
        service : `LocalService`
            This object.
        """
        self._cli("start", "--port", str(self.port), "--workers", str(self.workers), *self.start_args)
        return self

    def stop(self) -> None:
        """Stop the daemon (no error if it is not running)."""
        self._cli("stop")

    @property
    def pid(self) -> int:
        """Pid of the running daemon (0 if none is recorded)."""
        info = read_service_file(self.layout) or {}
        return int(info.get("pid", 0))

    def kill(self, timeout: float = 10.0) -> None:
        """Kill the daemon with SIGKILL, as a crash would, and wait for it.

        Parameters
        ----------
        timeout : `float`, optional
            Seconds to wait for the process to go.
        """
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def status(self) -> dict[str, Any] | None:
        """Return what the status route serves, `None` if it does not answer.

        Returns
        -------
        status : `dict` or `None`
            Request counts, running jobs and ``fault`` (set while database
            writes fail), as shown by ``panda-local status``.
        """
        from lsst.ctrl.bps.panda.local.routes import STATUS_PATH

        info = read_service_file(self.layout)
        if info is None:
            return None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{info['host']}:{info['port']}{STATUS_PATH}", timeout=10) as reply:
                return json.load(reply)
        except (OSError, ValueError):
            return None

    @property
    def exports(self) -> dict[str, str]:
        """The client environment (``panda-local env --json``)."""
        return json.loads(self._cli("env", "--json"))

    def client(self) -> RelayClient:
        """Return a panda-client based client of this service.

        Returns
        -------
        client : `RelayClient`
            The client.
        """
        return RelayClient(self.exports)

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
