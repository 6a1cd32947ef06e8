# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Runs the jobs: one scheduler thread, a pool of worker threads.

The scheduler thread owns the `RunGraph`. It takes events (attempt ended,
request submitted, abort, retry) in batches, applies each batch in one
database transaction, and only after the commit starts the attempts the
batch made runnable. Worker threads start one ``bash -c`` process each (in its
own process group) and report its exit status back as an event.
"""

from __future__ import annotations

__all__ = ["JOB_MARKER_VARIABLE", "Runner", "kill_orphans"]

import logging
import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsst.ctrl.bps.panda.constants import IN_PLACEHOLDER

from .graph import JobState, Launch, RunGraph
from .layout import StateLayout
from .store import Store

_LOG = logging.getLogger(__name__)

JOB_MARKER_VARIABLE = "PANDA_LOCAL_JOB"
"""Set in every job's environment to ``<state dir>:<panda id>``."""

_KILL_GRACE = 5.0

EXIT_CODE_FILE = "payload.exitcode"
"""Written by the job's wrapper shell when the payload ends."""

# Runs the payload ($1) in this bash (no extra process) and, when it ends,
# records its exit status next to its logs, so a result reached while the
# service was down is not lost. A job killed by SIGTERM/SIGINT (abort, stop)
# records nothing; neither does one killed by SIGKILL. A crash can leave the
# file empty, never wrong; an empty or missing file means the attempt is lost
# and runs again.
_WRAPPER = (
    f'trap \'printf "%d\\n" "$?" > {EXIT_CODE_FILE}\' EXIT; '
    'trap "trap - EXIT; exit 143" TERM; trap "trap - EXIT; exit 130" INT; '
    '__panda_local_payload=$1; shift; eval "$__panda_local_payload"'
)


@dataclass
class _Event:
    kind: str
    request_id: int = 0
    launch: Launch | None = None
    exit_code: int = 0
    end_time: float = 0.0
    done: threading.Event | None = None
    result: list[bool] = field(default_factory=list)


def kill_orphans(marker: str) -> int:
    """Kill the process groups of jobs left running by a killed service.

    Parameters
    ----------
    marker : `str`
        The state-directory part of `JOB_MARKER_VARIABLE`'s value.

    Returns
    -------
    killed : `int`
        Number of process groups signalled.
    """
    needle = f"{JOB_MARKER_VARIABLE}={marker}:".encode()
    groups = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as stream:
                if needle in stream.read():
                    groups.add(os.getpgid(int(entry)))
        except OSError:
            continue
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    return len(groups)


class Runner:
    """Schedules and runs the jobs of every active request.

    Parameters
    ----------
    store : `Store`
        The service database.
    state_dir : `str`
        Job directories go under ``<state_dir>/jobs``.
    workers : `int`
        Number of jobs run at once (a job needing more cores counts more).
    job_env : `dict` [`str`, `str`]
        Environment of every job, before the per-attempt variables.
    """

    def __init__(self, store: Store, state_dir: str, workers: int, job_env: dict[str, str]) -> None:
        self.store = store
        self.state_dir = os.path.abspath(state_dir)
        self.layout = StateLayout(self.state_dir)
        self.workers = max(1, workers)
        self.job_env = dict(job_env)
        self.graph = RunGraph(self.workers)
        self.graph.recorded_exit = self._recorded_exit
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="panda-local-job")
        self._procs: dict[int, subprocess.Popen] = {}
        self._kill: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="panda-local-scheduler", daemon=True)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Recover stored requests and start scheduling."""
        killed = kill_orphans(self.state_dir)
        if killed:
            _LOG.warning("Killed %d job process group(s) left by a previous run", killed)
        with self.store.begin() as conn:
            self.graph.init_ids(conn)
            for request_id in self.graph.active_request_ids(conn):
                self.graph.load(conn, request_id)
            self.graph.settle()
            launches = self.graph.next_launches()
            self.graph.flush(conn)
        _LOG.info("Recovered %d active request(s)", len(self.graph.requests))
        self._start(launches)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and kill running jobs (they rerun at next start)."""
        self._stopping.set()
        self._events.put(_Event("wake"))
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _KILL_GRACE
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill_all(procs)
        if self._thread.is_alive():
            self._thread.join(timeout=_KILL_GRACE + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- commands
    def request_added(self, request_id: int) -> None:
        """Schedule a request just stored.

        Parameters
        ----------
        request_id : `int`
            The request.
        """
        self._events.put(_Event("load", request_id))

    def command(self, kind: str, request_id: int, timeout: float = 60.0) -> bool:
        """Apply ``abort`` or ``retry`` and wait until it is committed.

        Parameters
        ----------
        kind : `str`
            ``abort`` or ``retry``.
        request_id : `int`
            The request.
        timeout : `float`, optional
            Seconds to wait for the scheduler.

        Returns
        -------
        applied : `bool`
            Whether the command changed anything.
        """
        event = _Event(kind, request_id, done=threading.Event())
        self._events.put(event)
        assert event.done is not None
        event.done.wait(timeout)
        return bool(event.result and event.result[0])

    def _recorded_exit(self, job: JobState) -> tuple[int, float] | None:
        workdir = self.layout.attempt_dir(job.request_id, job.transform_id, job.map_id, job.attempt_nr)
        path = os.path.join(workdir, EXIT_CODE_FILE)
        try:
            with open(path) as stream:
                exit_code = int(stream.read().strip())
            end_time = os.path.getmtime(path)
        except (OSError, ValueError):
            return None
        _LOG.info("Job %s attempt %d ended while the service was down (exit %d)",
                  job.name, job.attempt_nr, exit_code)  # fmt: skip
        return exit_code, end_time

    def running_count(self) -> int:
        """Return the number of job processes running now."""
        with self._lock:
            return len(self._procs)

    # ------------------------------------------------------------- scheduler
    def _next_batch(self) -> list[_Event]:
        try:
            batch = [self._events.get(timeout=1.0)]
        except queue.Empty:
            return []
        while len(batch) < 5000:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while not self._stopping.is_set():
            batch = self._next_batch()
            if self._stopping.is_set():
                break
            if not batch:
                continue
            try:
                launches, to_kill = self._apply(batch)
            except Exception:
                _LOG.exception("Scheduler batch failed; retrying its events")
                for event in batch:
                    self._events.put(event)
                time.sleep(1.0)
                continue
            for event in batch:
                if event.done is not None:
                    event.done.set()
            self._signal(to_kill)
            self._start(launches)

    def _apply(self, batch: list[_Event]) -> tuple[list[Launch], list[int]]:
        to_kill: list[int] = []
        with self.store.begin() as conn:
            for event in batch:
                if event.kind == "ended" and event.launch is not None:
                    self.graph.free += event.launch.slots
                    launch = event.launch
                    self.graph.complete(launch.job_id, launch.panda_id, event.exit_code, event.end_time)
                elif event.kind == "load":
                    self.graph.load(conn, event.request_id)
                elif event.kind == "abort":
                    killed = self.graph.abort(event.request_id)
                    to_kill.extend(killed)
                    event.result[:] = [True]
                elif event.kind == "retry":
                    event.result[:] = [self.graph.retry(conn, event.request_id)]
            self.graph.settle()
            launches = self.graph.next_launches()
            self.graph.flush(conn)
        self.graph.drop_terminated()
        return launches, to_kill

    # ------------------------------------------------------------- processes
    def _signal(self, panda_ids: list[int]) -> None:
        if not panda_ids:
            return
        with self._lock:
            self._kill.update(panda_ids)
            procs = [self._procs[p] for p in panda_ids if p in self._procs]
        for proc in procs:
            _killpg(proc.pid, signal.SIGTERM)
        if procs:
            timer = threading.Timer(_KILL_GRACE, _kill_all, args=(procs,))
            timer.daemon = True
            timer.start()

    def _start(self, launches: list[Launch]) -> None:
        for launch in launches:
            self._pool.submit(self._execute, launch)

    def _env(self, launch: Launch) -> dict[str, str]:
        env = dict(self.job_env)
        env["PanDA_AttemptNr"] = str(launch.attempt_nr)
        env["PandaID"] = str(launch.panda_id)
        env["PANDAID"] = str(launch.panda_id)
        env["PanDA_TaskID"] = str(launch.transform_id)
        env["IDDS_BUILD_REQUEST_ID"] = str(launch.request_id)
        env[JOB_MARKER_VARIABLE] = f"{self.state_dir}:{launch.panda_id}"
        return env

    def _execute(self, launch: Launch) -> None:
        workdir = self.layout.attempt_dir(
            launch.request_id, launch.transform_id, launch.map_id, launch.attempt_nr
        )
        command = launch.executable.replace(IN_PLACEHOLDER, launch.name)
        exit_code = 255
        try:
            os.makedirs(workdir, exist_ok=True)
            with (
                open(os.path.join(workdir, "payload.stdout"), "wb") as out,
                open(os.path.join(workdir, "payload.stderr"), "wb") as err,
            ):
                proc = subprocess.Popen(
                    ["bash", "-c", _WRAPPER, "panda-local-job", command],
                    cwd=workdir,
                    env=self._env(launch),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            with self._lock:
                self._procs[launch.panda_id] = proc
                doomed = launch.panda_id in self._kill or self._stopping.is_set()
            if doomed:
                _killpg(proc.pid, signal.SIGKILL)
            exit_code = proc.wait()
        except OSError as exc:
            _LOG.error("Cannot start job %s attempt %d: %s", launch.name, launch.attempt_nr, exc)
        finally:
            with self._lock:
                self._procs.pop(launch.panda_id, None)
                self._kill.discard(launch.panda_id)
        if exit_code < 0:
            exit_code = 128 - exit_code
        if not self._stopping.is_set():
            self._events.put(_Event("ended", launch=launch, exit_code=exit_code, end_time=time.time()))


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _kill_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _killpg(proc.pid, signal.SIGKILL)
