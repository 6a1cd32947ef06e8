# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Runs the jobs: one scheduler thread, a pool of worker threads.

The scheduler thread owns the `RunGraph`. It takes events (attempt ended,
request submitted, abort, retry) in batches, applies each batch in one
database transaction, and only after the commit starts the attempts the
batch made runnable. Worker threads start one ``bash -c`` process each (in its
own session and process group) and report its exit status back as an event
once nothing of that group runs any more, so two attempts of a job never
overlap.

A batch whose transaction fails (database locked past its busy timeout, disk
full) leaves the in-memory graph ahead of the store: the graph is then rebuilt
from the store (attempts this service still runs stay running) and the batch
is applied again, with growing pauses, until it commits. Until then nothing
new starts; the fault is logged and shown by ``panda-local status``.
"""

from __future__ import annotations

__all__ = ["JOB_MARKER_VARIABLE", "Runner", "StoreFault", "end_group", "kill_orphans"]

import logging
import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection

from lsst.ctrl.bps.panda.constants import BUILD_REQUEST_VARIABLE, BUILD_SIGNATURE_VARIABLE, IN_PLACEHOLDER

from .build import build_signature
from .graph import AttemptOutcome, JobState, Launch, RunGraph
from .layout import PAYLOAD_STDERR, PAYLOAD_STDOUT, StateLayout
from .naming import bps_job_name
from .run_events import EventKind, RunEvent
from .run_store import read_active_request_ids, read_next_panda_id, read_request, write_changes
from .store import Store

_LOG = logging.getLogger(__name__)

JOB_MARKER_VARIABLE = "PANDA_LOCAL_JOB"
"""Set in every job's environment to ``<state dir>:<panda id>``."""

_KILL_GRACE = 5.0

_FAILURE_TEXT = {
    AttemptOutcome.RETRY: "will be retried",
    AttemptOutcome.FAILED: "failed for good (no attempts left)",
    AttemptOutcome.FAILED_NO_RETRY: "failed for good (exit code in retryUnlessExit, not retried)",
}
"""How ``panda-local.log`` words each failed outcome of an attempt."""

_FAULT_FIRST_PAUSE = 0.5
_FAULT_MAX_PAUSE = 30.0
_START_FAILURE_PAUSE = 2.0

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
class StoreFault:
    """Database writes of the scheduler are failing and being retried."""

    error: str
    """The last error, e.g. ``database is locked``."""
    since: float
    """When the first of these failures happened."""
    failures: int
    """Failed attempts so far."""
    retry_in: float
    """Seconds until the next attempt."""

    def as_dict(self) -> dict[str, Any]:
        """Return the fault as JSON-able data."""
        return asdict(self)


@dataclass
class _Applied:
    """What a batch leaves to do once committed."""

    launches: list[Launch] = field(default_factory=list)
    to_kill: list[int] = field(default_factory=list)
    answers: list[tuple[Future[bool], bool]] = field(default_factory=list)
    """Command results to set."""


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
        self._events: queue.SimpleQueue[RunEvent] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="panda-local-job")
        self._procs: dict[int, subprocess.Popen] = {}
        # Scheduler thread only: attempts started whose end is not committed.
        self._active: dict[int, Launch] = {}
        self.graph.live = self._active
        self._held: list[RunEvent] = []
        self._stale = False
        self.fault: StoreFault | None = None
        """Set while database writes fail (read by ``panda-local status``)."""
        self._kill: set[int] = set()
        self._batches: dict[int, bool] = {}  # event-service PanDA id -> killed
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
            self._load_active(conn)
            self.graph.settle()
            launches = self.graph.next_launches()
            write_changes(conn, self.graph.take_changes())
        _LOG.info("Recovered %d active request(s)", len(self.graph.requests))
        self._start(launches)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and kill running jobs (they rerun at next start)."""
        self._stopping.set()
        self._events.put(RunEvent(EventKind.WAKE))
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
        self._events.put(RunEvent(EventKind.LOAD, request_id))

    def request_extended(self, request_id: int, transform_ids: list[int]) -> None:
        """Schedule works just added to a request (a remote build's).

        Parameters
        ----------
        request_id : `int`
            The request.
        transform_ids : `list` [`int`]
            The new transforms.
        """
        self._events.put(RunEvent(EventKind.EXTEND, request_id, transform_ids=tuple(transform_ids)))

    def command(self, kind: EventKind, request_id: int, timeout: float = 60.0) -> bool:
        """Apply `EventKind.ABORT` or `EventKind.RETRY` and wait until it is
        committed.

        Parameters
        ----------
        kind : `EventKind`
            One of `run_events.COMMANDS`.
        request_id : `int`
            The request.
        timeout : `float`, optional
            Seconds to wait for the scheduler.

        Returns
        -------
        applied : `bool`
            Whether the command changed anything (`False` if not committed
            within ``timeout``).

        Raises
        ------
        ValueError
            If ``kind`` is not a command.
        """
        event = RunEvent.command(kind, request_id)
        self._events.put(event)
        assert event.result is not None
        try:
            return event.result.result(timeout)
        except FutureTimeout:
            return False

    def _recorded_exit(self, job: JobState) -> tuple[int, float] | None:
        task = self.graph.transforms.get(job.transform_id)
        workdir = self.layout.attempt_dir(job.request_id, task.name if task else "", job.name, job.attempt_nr)
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
    def _next_batch(self) -> list[RunEvent]:
        batch, self._held = self._held, []
        if not batch:
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
                applied = self._apply(batch)
            except Exception as exc:
                self._held, self._stale = batch, True
                self._pause_after_fault(exc, len(batch))
                continue
            self._committed(batch, applied)
            self._signal(applied.to_kill)
            self._start(applied.launches)

    def _apply(self, batch: list[RunEvent]) -> _Applied:
        applied = _Applied()
        with self.store.begin() as conn:
            if self._stale:
                self._rebuild(conn)
            for event in batch:
                self._apply_event(conn, event, applied)
            self.graph.settle()
            applied.launches = self.graph.next_launches()
            write_changes(conn, self.graph.take_changes())
        self.graph.drop_terminated()
        return applied

    def _apply_event(self, conn: Connection, event: RunEvent, applied: _Applied) -> None:
        launch = event.launch
        match event.kind:
            case EventKind.ENDED if launch is not None:
                self.graph.free += launch.slots
                outcome = self.graph.complete(launch.job_id, launch.panda_id, event.exit_code, event.end_time)
                self._log_outcome(launch, event.exit_code, outcome)
            case EventKind.NOT_STARTED if launch is not None:
                self.graph.free += launch.slots
                self.graph.not_started(launch.job_id, launch.panda_id)
            case EventKind.LOAD:
                self._load(conn, event.request_id)
            case EventKind.EXTEND:
                self._load(conn, event.request_id, event.transform_ids)
            case EventKind.ABORT if event.result is not None:
                applied.to_kill.extend(self.graph.abort(event.request_id))
                applied.answers.append((event.result, True))
            case EventKind.RETRY if event.result is not None:
                self._load(conn, event.request_id)
                applied.answers.append((event.result, self.graph.retry(event.request_id)))

    def _load(self, conn: Connection, request_id: int, only: tuple[int, ...] | None = None) -> None:
        """Load a request into the graph, or the works added to it."""
        loaded = request_id in self.graph.requests
        if loaded and only is None:
            return
        stored = read_request(conn, request_id, only if loaded else None)
        if stored is not None:
            self.graph.load(stored)

    def _load_active(self, conn: Connection) -> None:
        self.graph.next_panda_id = read_next_panda_id(conn)
        for request_id in read_active_request_ids(conn):
            self._load(conn, request_id)

    def _rebuild(self, conn: Connection) -> None:
        """Load the graph again from the store after a failed batch."""
        self.graph.reset()
        self._load_active(conn)
        self.graph.free = self.workers - sum(launch.slots for launch in self._active.values())
        _LOG.info("Rebuilt the run graph from the database (%d active request(s), %d job(s) running)",
                  len(self.graph.requests), len(self._active))  # fmt: skip

    def _committed(self, batch: list[RunEvent], applied: _Applied) -> None:
        if self.fault is not None:
            _LOG.warning("Database writes work again after %d failed attempt(s) over %.0f s",
                         self.fault.failures, time.time() - self.fault.since)  # fmt: skip
            self.fault = None
        self._stale = False
        for event in batch:
            if event.launch is not None and event.launch.slots:
                self._active.pop(event.launch.panda_id, None)
        for future, answer in applied.answers:
            future.set_result(answer)

    def _pause_after_fault(self, exc: Exception, events: int) -> None:
        error = str(getattr(exc, "orig", None) or exc)
        fault = self.fault
        if fault is None:
            fault = self.fault = StoreFault(error, time.time(), 1, _FAULT_FIRST_PAUSE)
            _LOG.error("Database write failed (%s): nothing new starts; the %d event(s) are kept and "
                       "applied again from the database state", error, events, exc_info=exc)  # fmt: skip
        else:
            fault.error, fault.failures = error, fault.failures + 1
            fault.retry_in = min(2 * fault.retry_in, _FAULT_MAX_PAUSE)
            _LOG.warning("Database write failed again (%d failures since %s): %s; next try in %.1f s",
                         fault.failures, time.strftime("%H:%M:%S", time.localtime(fault.since)),
                         error, fault.retry_in)  # fmt: skip
        self._stopping.wait(fault.retry_in)

    def _log_outcome(self, launch: Launch, exit_code: int, outcome: AttemptOutcome | None) -> None:
        """Write one ``panda-local.log`` line for a failed attempt."""
        what = _FAILURE_TEXT.get(outcome) if outcome is not None else None
        if what is None:
            return
        stderr = os.path.join(self._workdir(launch), PAYLOAD_STDERR)
        name = bps_job_name(launch.job_name or launch.name)
        _LOG.warning("Request %d job %s attempt %d exited %d: %s; stderr %s",
                     launch.request_id, name, launch.attempt_nr, exit_code, what, stderr)  # fmt: skip

    def _workdir(self, launch: Launch) -> str:
        name = launch.job_name or launch.name
        return self.layout.attempt_dir(launch.request_id, launch.task_name, name, launch.attempt_nr)

    # ------------------------------------------------------------- processes
    def _signal(self, panda_ids: list[int]) -> None:
        if not panda_ids:
            return
        with self._lock:
            self._kill.update(panda_ids)
            self._batches.update((p, True) for p in panda_ids if p in self._batches)
            procs = [self._procs[p] for p in panda_ids if p in self._procs]
        for proc in procs:
            _killpg(proc.pid, signal.SIGTERM)
        if procs:
            timer = threading.Timer(_KILL_GRACE, _kill_all, args=(procs,))
            timer.daemon = True
            timer.start()

    def _start(self, launches: list[Launch]) -> None:
        for launch in launches:
            # An event-service PanDA job is active until its last payload,
            # which holds its slots, has ended.
            self._active[launch.panda_id] = launch.batch[-1] if launch.batch else launch
            if launch.batch:
                with self._lock:
                    self._batches[launch.panda_id] = False
            self._pool.submit(self._execute_batch if launch.batch else self._execute, launch)

    def _execute_batch(self, launch: Launch) -> None:
        """Run the payloads of an event-service PanDA job one after another.

        Each payload reports its own end (its own content row); once the
        PanDA job is killed (abort), the payloads not yet started end
        without running (their contents are already cancelled).

        Parameters
        ----------
        launch : `Launch`
            The first payload, the others in its ``batch``.
        """
        try:
            for payload in (launch, *launch.batch):
                if self._stopping.is_set():
                    return
                with self._lock:
                    killed = self._batches.get(launch.panda_id, False)
                if killed:
                    self._report(RunEvent.ended(payload, 143, time.time()))
                else:
                    self._execute(payload)
        finally:
            with self._lock:
                self._batches.pop(launch.panda_id, None)

    def _env(self, launch: Launch) -> dict[str, str]:
        env = dict(self.job_env)
        env["PanDA_AttemptNr"] = str(launch.attempt_nr)
        env["PandaID"] = str(launch.panda_id)
        env["PANDAID"] = str(launch.panda_id)
        env["PanDA_TaskID"] = str(launch.transform_id)
        env[BUILD_REQUEST_VARIABLE] = str(launch.request_id)
        env[BUILD_SIGNATURE_VARIABLE] = build_signature(self.state_dir, launch.request_id)
        env[JOB_MARKER_VARIABLE] = f"{self.state_dir}:{launch.panda_id}"
        return env

    def _execute(self, launch: Launch) -> None:
        try:
            proc = self._spawn(launch)
        except OSError as exc:
            # No payload ran (disk full, no such directory...): run it again
            # after a pause, without using one of the job's attempts.
            _LOG.error("Cannot start job %s attempt %d: %s; starting it again in %.0f s",
                       launch.name, launch.attempt_nr, exc, _START_FAILURE_PAUSE)  # fmt: skip
            self._stopping.wait(_START_FAILURE_PAUSE)
            self._report(RunEvent(EventKind.NOT_STARTED, launch.request_id, launch=launch))
            return
        try:
            with self._lock:
                self._procs[launch.panda_id] = proc
                doomed = launch.panda_id in self._kill or self._stopping.is_set()
            if doomed:
                _killpg(proc.pid, signal.SIGKILL)
            exit_code = proc.wait()
            end_time = time.time()
            end_group(proc.pid)
        finally:
            with self._lock:
                self._procs.pop(launch.panda_id, None)
                self._kill.discard(launch.panda_id)
        if exit_code < 0:
            exit_code = 128 - exit_code
        self._report(RunEvent.ended(launch, exit_code, end_time))

    def _spawn(self, launch: Launch) -> subprocess.Popen:
        workdir = self._workdir(launch)
        command = launch.executable.replace(IN_PLACEHOLDER, launch.name)
        os.makedirs(workdir, exist_ok=True)
        with (
            open(os.path.join(workdir, PAYLOAD_STDOUT), "wb") as out,
            open(os.path.join(workdir, PAYLOAD_STDERR), "wb") as err,
        ):
            return subprocess.Popen(
                ["bash", "-c", _WRAPPER, "panda-local-job", command],
                cwd=workdir,
                env=self._env(launch),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def _report(self, event: RunEvent) -> None:
        if not self._stopping.is_set():
            self._events.put(event)


def _group_running(pgid: int) -> bool:
    """Tell whether a process group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def end_group(pgid: int, grace: float = _KILL_GRACE) -> None:
    """Stop what is left of an attempt's process group, wait until it is gone.

    The attempt's wrapper shell has ended (or was killed); processes it left
    in its group (payloads put in the background, a payload whose shell was
    killed) get SIGTERM, then SIGKILL after ``grace`` seconds.

    Parameters
    ----------
    pgid : `int`
        The group: the pid of the attempt's wrapper shell.
    grace : `float`, optional
        Seconds between SIGTERM and SIGKILL.
    """
    if not _group_running(pgid):
        return
    _LOG.info("Killing the processes left in process group %d after its attempt ended", pgid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        _killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while _group_running(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_running(pgid):
            return
    _LOG.error("Process group %d still runs after SIGKILL", pgid)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _kill_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _killpg(proc.pid, signal.SIGKILL)
