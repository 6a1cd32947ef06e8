# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""In-memory job graph of the active requests and its transitions.

`RunGraph` is the run state machine: it holds no processes and does no I/O.
The runner reads requests with ``run_store.read_request`` and hands them to
`RunGraph.load`; after a batch of events it writes `RunGraph.take_changes`
with ``run_store.write_changes`` in the batch's transaction, then starts the
launches the batch returned once that transaction is committed.
"""

from __future__ import annotations

__all__ = [
    "AttemptOutcome",
    "JobState",
    "Launch",
    "RequestState",
    "RunChanges",
    "RunGraph",
    "StoredRequest",
    "TransformState",
]

import dataclasses
import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

from lsst.ctrl.bps.panda.idds_model import (
    JOB_RETRIED,
    JOB_TERMINAL,
    REQUEST_TERMINAL,
    TRANSFORM_TERMINAL,
    transform_status,
)

from .conditions import Condition
from .event_service import EventService
from .statuses import request_status

_LOG = logging.getLogger(__name__)

_RUNNABLE = (ContentStatus.Activated, ContentStatus.Failed)


class AttemptOutcome(enum.Enum):
    """What the end of an attempt did to its job (`RunGraph.complete`)."""

    FINISHED = "finished"
    """Exit code 0: the job is done."""
    RETRY = "retry"
    """Failed with attempts left: the job runs again."""
    FAILED = "failed"
    """Failed with no attempt left: the job failed for good."""
    FAILED_NO_RETRY = "failed-no-retry"
    """Exit code listed in ``retryUnlessExit``: failed for good at once."""


@dataclass
class JobState:
    """One job (dependency-map entry) of a loaded request."""

    job_id: int
    request_id: int
    transform_id: int
    map_id: int
    name: str
    status: ContentStatus
    attempt_nr: int = 0
    attempt_base: int = 0
    lost_attempts: int = 0
    panda_id: int | None = None
    exit_code: int | None = None
    job_status: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    pending: int = 0
    parent_failed: bool = False
    children: list[int] = field(default_factory=list)


@dataclass
class TransformState:
    """One transform (work) of a loaded request."""

    transform_id: int
    request_id: int
    internal_id: str
    name: str
    executable: str
    max_attempt: int
    core_count: int
    gated: bool
    released: bool
    status: TransformStatus
    retry_unless_exit: frozenset[int] = frozenset()
    """Exit codes after which a job is not run again (``retryUnlessExit``)."""
    job_ids: list[int] = field(default_factory=list)
    counts: Counter[int] = field(default_factory=Counter)
    event_service: EventService | None = None


@dataclass
class RequestState:
    """One loaded request."""

    request_id: int
    status: RequestStatus
    aborted: bool
    transforms: dict[str, TransformState] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    """Internal ids of the conditions that have fired."""


@dataclass
class StoredRequest:
    """A request as read from the store, or the part of it added by a build."""

    request_id: int
    status: RequestStatus
    aborted: bool
    transforms: list[TransformState]
    """Without jobs (their ``job_ids`` and ``counts`` are filled on load)."""
    jobs: list[JobState]
    """In ascending id order, as stored (no links)."""
    deps: list[tuple[int, int]]
    """``(job_id, parent_id)`` pairs."""
    conditions: list[Condition]
    fired: set[str]
    """Internal ids of the stored conditions that have fired."""


@dataclass(frozen=True)
class RunChanges:
    """What changed since the last `RunGraph.take_changes`, to be written."""

    jobs: tuple[JobState, ...]
    transforms: tuple[TransformState, ...]
    requests: tuple[RequestState, ...]
    """Their status, abort flag and fired conditions."""


@dataclass(frozen=True)
class Launch:
    """A job attempt recorded as running, to be started by the runner."""

    job_id: int
    request_id: int
    transform_id: int
    map_id: int
    panda_id: int
    attempt_nr: int
    name: str
    executable: str
    slots: int
    task_name: str = ""
    job_name: str = ""
    """The job's pseudo input name (``name`` is what ``${IN/L}`` becomes:
    the event name for an event-service payload); names its directory."""
    batch: tuple[Launch, ...] = ()
    """Event service: more payloads run after this one in the same slot
    under the same PanDA id (only the last one frees the slots)."""


class RunGraph:
    """Jobs, transforms and requests being run, and their transitions.

    Parameters
    ----------
    slots : `int`
        Number of worker slots (jobs needing more cores use more slots,
        capped at this number).
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.free = slots
        self.jobs: dict[int, JobState] = {}
        self.transforms: dict[int, TransformState] = {}
        self.requests: dict[int, RequestState] = {}
        self.ready: deque[int] = deque()
        self.next_panda_id = 1
        """Set from the store (one more than the highest stored PanDA id)."""
        self._dirty_jobs: set[int] = set()
        self._dirty_transforms: set[int] = set()
        self._touched: set[int] = set()
        self._dirty_requests: set[int] = set()
        self.recorded_exit: Callable[[JobState], tuple[int, float] | None] = _no_record
        """Finds the exit code and end time an attempt left behind."""
        self.live: Container[int] = frozenset()
        """PanDA ids of the attempts this service is running: a job recorded
        as running with one of them is still running when it is (re)loaded."""

    def reset(self) -> None:
        """Forget every loaded request, to load them again from the store.

        Used after a batch whose transaction failed: the in-memory state then
        holds changes the store does not, and is rebuilt from the store.
        """
        self.jobs.clear()
        self.transforms.clear()
        self.requests.clear()
        self.ready.clear()
        self._dirty_jobs.clear()
        self._dirty_transforms.clear()
        self._touched.clear()
        self._dirty_requests.clear()

    # ----------------------------------------------------------------- loading
    def load(self, stored: StoredRequest) -> None:
        """Load a stored request, or the works added to a loaded one.

        An attempt recorded as running whose result `recorded_exit` finds
        (it ended while the service was down) is completed with it; any
        other such attempt not in `live` is lost and the job runs again.

        Parameters
        ----------
        stored : `StoredRequest`
            The request as read, or for a loaded request only its added
            transforms, their jobs and dependencies (its conditions not
            loaded yet are added).
        """
        req = self.requests.get(stored.request_id)
        if req is None:
            req = self.requests[stored.request_id] = RequestState(
                stored.request_id, stored.status, stored.aborted
            )
        for tf in stored.transforms:
            self.transforms[tf.transform_id] = tf
            req.transforms[tf.internal_id] = tf
        ended = self._add_jobs(stored.jobs)
        for job_id, parent_id in stored.deps:
            self.jobs[parent_id].children.append(job_id)
            self._count_parent(self.jobs[parent_id], self.jobs[job_id])
        for tf in stored.transforms:
            self._queue_jobs(tf)
        for job_id, (exit_code, end_time) in ended.items():
            job = self.jobs[job_id]
            if job.panda_id is not None:
                self.complete(job_id, job.panda_id, exit_code, end_time)
        known = {cond.internal_id for cond in req.conditions}
        req.conditions.extend(cond for cond in stored.conditions if cond.internal_id not in known)
        req.fired.update(stored.fired - known)
        self._touched.add(stored.request_id)

    def _add_jobs(self, jobs: Iterable[JobState]) -> dict[int, tuple[int, float]]:
        ended: dict[int, tuple[int, float]] = {}
        for job in jobs:
            self.jobs[job.job_id] = job
            tf = self.transforms[job.transform_id]
            tf.job_ids.append(job.job_id)
            tf.counts[job.status.value] += 1
            if job.status == ContentStatus.Processing and job.panda_id not in self.live:
                result = self.recorded_exit(job)
                if result is not None:
                    ended[job.job_id] = result
                else:
                    # The service stopped while this attempt ran: run it again.
                    job.lost_attempts += 1
                    self._set(job, ContentStatus.Activated, "activated")
        return ended

    @staticmethod
    def _count_parent(parent: JobState, child: JobState) -> None:
        if parent.status not in JOB_TERMINAL:
            child.pending += 1
        elif parent.status != ContentStatus.Available:
            child.parent_failed = True

    def _queue_jobs(self, tf: TransformState) -> None:
        for job_id in tf.job_ids:
            job = self.jobs[job_id]
            if job.status in _RUNNABLE:
                self.ready.append(job_id)
            elif tf.released and job.status == ContentStatus.New and job.pending == 0:
                self._release_job(job)
        self._dirty_transforms.add(tf.transform_id)

    def unload(self, request_id: int) -> None:
        """Forget a request (before reloading it).

        Parameters
        ----------
        request_id : `int`
            The request.
        """
        req = self.requests.pop(request_id, None)
        if req is None:
            return
        for tf in req.transforms.values():
            for job_id in tf.job_ids:
                self.jobs.pop(job_id, None)
            self.transforms.pop(tf.transform_id, None)
        self.ready = deque(job_id for job_id in self.ready if job_id in self.jobs)

    # ------------------------------------------------------------- transitions
    def _set(self, job: JobState, status: ContentStatus, job_status: str | None) -> None:
        tf = self.transforms.get(job.transform_id)
        if tf is not None:
            tf.counts[job.status.value] -= 1
            tf.counts[status.value] += 1
            self._dirty_transforms.add(tf.transform_id)
        job.status = status
        job.job_status = job_status
        self._dirty_jobs.add(job.job_id)
        self._touched.add(job.request_id)

    def _release_job(self, job: JobState) -> None:
        if job.parent_failed:
            self._set(job, ContentStatus.Missing, None)
            self._ended(job)
        else:
            self._set(job, ContentStatus.Activated, "activated")
            self.ready.append(job.job_id)

    def _ended(self, first: JobState) -> None:
        stack = [first]
        while stack:
            job = stack.pop()
            failed = job.status != ContentStatus.Available
            for child_id in job.children:
                child = self.jobs[child_id]
                child.pending -= 1
                child.parent_failed = child.parent_failed or failed
                released = self.transforms[child.transform_id].released
                if child.pending == 0 and released and child.status == ContentStatus.New:
                    if child.parent_failed:
                        self._set(child, ContentStatus.Missing, None)
                        stack.append(child)
                    else:
                        self._set(child, ContentStatus.Activated, "activated")
                        self.ready.append(child_id)

    def complete(self, job_id: int, panda_id: int, exit_code: int, end_time: float) -> AttemptOutcome | None:
        """Record the end of an attempt: success, retry, or final failure.

        An exit code listed in the work's ``retryUnlessExit`` ends the job at
        once, as ctrl_bps documents that key; any other non-zero code is
        retried while attempts remain.

        Parameters
        ----------
        job_id : `int`
            The job.
        panda_id : `int`
            The attempt's PanDA id (stale attempts are ignored).
        exit_code : `int`
            Exit status of the payload.
        end_time : `float`
            When it ended.

        Returns
        -------
        outcome : `AttemptOutcome` or `None`
            What became of the job; `None` for a stale attempt.
        """
        job = self.jobs.get(job_id)
        if job is None or job.panda_id != panda_id or job.status != ContentStatus.Processing:
            return None
        job.exit_code = exit_code
        job.end_time = end_time
        outcome = self._outcome(job, exit_code)
        if outcome is AttemptOutcome.RETRY:
            self._set(job, ContentStatus.Failed, "failed")
            self.ready.append(job_id)
            return outcome
        if outcome is AttemptOutcome.FINISHED:
            self._set(job, ContentStatus.Available, "finished")
        else:
            self._set(job, ContentStatus.FinalFailed, "failed")
        self._ended(job)
        return outcome

    def _outcome(self, job: JobState, exit_code: int) -> AttemptOutcome:
        if exit_code == 0:
            return AttemptOutcome.FINISHED
        tf = self.transforms[job.transform_id]
        if exit_code in tf.retry_unless_exit:
            return AttemptOutcome.FAILED_NO_RETRY
        used = job.attempt_nr - job.attempt_base - job.lost_attempts
        return AttemptOutcome.RETRY if used < tf.max_attempt else AttemptOutcome.FAILED

    def not_started(self, job_id: int, panda_id: int) -> None:
        """Make a job runnable again after its attempt could not be started.

        The attempt (its directory could not be made, its process not
        started) does not count against ``maxattempt``: no payload ran.

        Parameters
        ----------
        job_id : `int`
            The job.
        panda_id : `int`
            The attempt's PanDA id (stale attempts are ignored).
        """
        job = self.jobs.get(job_id)
        if job is None or job.panda_id != panda_id or job.status != ContentStatus.Processing:
            return
        job.lost_attempts += 1
        self._set(job, ContentStatus.Activated, "activated")
        self.ready.append(job_id)

    def next_launches(self) -> list[Launch]:
        """Record as running as many ready jobs as the free slots allow.

        Returns
        -------
        launches : `list` [`Launch`]
            The attempts to start once the batch is committed.
        """
        launches = []
        now = time.time()
        while self.ready and self.free > 0:
            job = self.jobs.get(self.ready[0])
            if job is None or job.status not in _RUNNABLE:
                self.ready.popleft()
                continue
            tf = self.transforms[job.transform_id]
            slots = min(tf.core_count, self.slots)
            if slots > self.free:
                break
            self.ready.popleft()
            self.free -= slots
            panda_id = self.next_panda_id
            self.next_panda_id += 1
            launches.append(self._launch(self._payloads(job, tf), tf, panda_id, slots, now))
        return launches

    def _payloads(self, job: JobState, tf: TransformState) -> list[JobState]:
        """Return what one PanDA job runs: the job at the head of the queue,
        and for an event-service work the ready payloads sharing its file.
        """
        es = tf.event_service
        if es is None:
            return [job]

        def order_id(job_id: int) -> int | None:
            other = self.jobs.get(job_id)
            if other is None or other.transform_id != tf.transform_id or other.status not in _RUNNABLE:
                return None
            return other.map_id

        return [job] + [self.jobs[j] for j in es.siblings(job.job_id, self.ready, order_id, es.max_events)]

    def _launch(self, payloads: list[JobState], tf: TransformState, panda_id: int, slots: int,
                now: float) -> Launch:  # fmt: skip
        """Record the payloads of a PanDA job as running.

        Returns
        -------
        launch : `Launch`
            The first payload, the others in its ``batch`` (only the last
            one holds the ``slots``).
        """
        es = tf.event_service
        launches = []
        for index, payload in enumerate(payloads):
            payload.attempt_nr += 1
            payload.panda_id = panda_id
            payload.start_time, payload.end_time, payload.exit_code = now, None, None
            self._set(payload, ContentStatus.Processing, "running")
            name = payload.name if es is None else es.event_name(payload.map_id)
            last = index == len(payloads) - 1
            launches.append(
                Launch(payload.job_id, payload.request_id, tf.transform_id, payload.map_id, panda_id,
                       payload.attempt_nr, name, tf.executable, slots if last else 0, tf.name,
                       payload.name)
            )  # fmt: skip
        return dataclasses.replace(launches[0], batch=tuple(launches[1:]))

    # ------------------------------------------------------------ commands
    def abort(self, request_id: int) -> list[int]:
        """Cancel every job of a request that has not ended.

        Parameters
        ----------
        request_id : `int`
            The request.

        Returns
        -------
        panda_ids : `list` [`int`]
            Attempts that were running and must be killed.
        """
        req = self.requests.get(request_id)
        if req is None or req.status in REQUEST_TERMINAL:
            return []
        req.aborted = True
        to_kill = []
        for tf in req.transforms.values():
            if not tf.released:
                continue
            for job_id in tf.job_ids:
                job = self.jobs[job_id]
                if job.status == ContentStatus.Processing and job.panda_id is not None:
                    to_kill.append(job.panda_id)
                if job.status not in JOB_TERMINAL:
                    self._set(job, ContentStatus.Cancelled, "cancelled")
        self._dirty_requests.add(request_id)
        _LOG.info("Request %d aborted: %d running job(s) killed", request_id, len(to_kill))
        return to_kill

    def retry(self, request_id: int) -> bool:
        """Reset failed, missing and cancelled jobs of a terminated request.

        Gated works (the final job) that already ran are reset entirely and
        wait for their condition again, so they run after the retried jobs.

        Parameters
        ----------
        request_id : `int`
            The request (loaded, see `load`).

        Returns
        -------
        retried : `bool`
            `False` when the request is not loaded, not terminated or had
            nothing to redo.
        """
        req = self.requests.get(request_id)
        if req is None or req.status not in REQUEST_TERMINAL:
            return False
        jobs = [self.jobs[job_id] for tf in req.transforms.values() for job_id in tf.job_ids]
        reset = [job for job in jobs if job.status in JOB_RETRIED]
        if not reset:
            return False
        _LOG.info("Request %d restarted: %d failed, missing or cancelled job(s) to run again",
                  request_id, len(reset))  # fmt: skip
        self._reset_jobs(reset)
        for tf in req.transforms.values():
            if tf.gated and tf.released:
                tf.released = False
                self._reset_jobs([self.jobs[job_id] for job_id in tf.job_ids])
        req.fired.clear()
        req.aborted = False
        req.status = RequestStatus.Transforming
        self._dirty_requests.add(request_id)
        self._relink(req, jobs)
        return True

    def _reset_jobs(self, reset: list[JobState]) -> None:
        for job in reset:
            job.attempt_base = job.attempt_nr
            job.lost_attempts = 0
            job.exit_code = None
            self._set(job, ContentStatus.New, None)
            tf = self.transforms[job.transform_id]
            if tf.status in TRANSFORM_TERMINAL:
                tf.status = TransformStatus.Transforming if tf.released else TransformStatus.New

    def _relink(self, req: RequestState, jobs: list[JobState]) -> None:
        """Count again what each job of a retried request waits for, and
        release or queue its jobs, as a reload of the request would.
        """
        for job in jobs:
            job.pending, job.parent_failed = 0, False
        for parent in jobs:
            for child_id in parent.children:
                self._count_parent(parent, self.jobs[child_id])
        members = {job.job_id for job in jobs}
        self.ready = deque(job_id for job_id in self.ready if job_id not in members)
        for tf in req.transforms.values():
            self._queue_jobs(tf)
        self._touched.add(req.request_id)

    # ----------------------------------------------------------- derivation
    def settle(self) -> None:
        """Update transform statuses, fire conditions, update requests."""
        changed = True
        while changed:
            self._settle_transforms()
            changed = False
            for request_id in list(self._touched | self._dirty_requests):
                maybe = self.requests.get(request_id)
                if maybe is not None and not maybe.aborted:
                    changed = self._fire_conditions(maybe) or changed
        for request_id in list(self._touched | self._dirty_requests):
            loaded = self.requests.get(request_id)
            if loaded is not None:
                self._update_request(loaded)

    def _settle_transforms(self) -> None:
        for tf_id in list(self._dirty_transforms):
            tf = self.transforms.get(tf_id)
            if tf is None or not tf.released:
                continue
            new = transform_status(tf.counts)
            if self.requests[tf.request_id].aborted and new == TransformStatus.Transforming:
                new = TransformStatus.Cancelled
            if new != tf.status:
                tf.status = new
                self._dirty_requests.add(tf.request_id)

    def _fire_conditions(self, req: RequestState) -> bool:
        status_of = {iid: (tf.status if tf.released else None) for iid, tf in req.transforms.items()}
        fired_any = False
        for cond in req.conditions:
            if cond.internal_id in req.fired:
                continue
            targets = cond.targets(status_of)
            if targets is None:
                continue
            req.fired.add(cond.internal_id)
            self._dirty_requests.add(req.request_id)
            for iid in targets:
                if iid in req.transforms:
                    self._release_transform(req.transforms[iid])
                    fired_any = True
        return fired_any

    def _release_transform(self, tf: TransformState) -> None:
        if tf.released:
            return
        tf.released = True
        tf.status = TransformStatus.Transforming
        self._dirty_transforms.add(tf.transform_id)
        for job_id in tf.job_ids:
            job = self.jobs[job_id]
            if job.status == ContentStatus.New and job.pending == 0:
                self._release_job(job)

    def _update_request(self, req: RequestState) -> None:
        released = [tf.status for tf in req.transforms.values() if tf.released]
        unreleased = any(not tf.released for tf in req.transforms.values())
        new = request_status(released, unreleased, req.aborted)
        if new != req.status:
            req.status = new
            self._dirty_requests.add(req.request_id)
            if new in REQUEST_TERMINAL:
                _LOG.info("Request %d ended %s: %s", req.request_id, new.name, self._job_counts(req))

    def _job_counts(self, req: RequestState) -> str:
        counts: Counter[str] = Counter()
        for tf in req.transforms.values():
            for status, number in tf.counts.items():
                counts[ContentStatus(status).name] += number
        return ", ".join(f"{number} {name}" for name, number in sorted(counts.items()) if number)

    # -------------------------------------------------------------- changes
    def take_changes(self) -> RunChanges:
        """Return what changed since the last call, and start afresh.

        Returns
        -------
        changes : `RunChanges`
            Changed jobs, transforms and requests (the live objects), to be
            written in the batch's transaction.
        """
        changes = RunChanges(
            jobs=tuple(self.jobs[j] for j in sorted(self._dirty_jobs) if j in self.jobs),
            transforms=tuple(
                self.transforms[t] for t in sorted(self._dirty_transforms) if t in self.transforms
            ),
            requests=tuple(self.requests[r] for r in sorted(self._dirty_requests) if r in self.requests),
        )
        self._dirty_jobs.clear()
        self._dirty_transforms.clear()
        self._touched.clear()
        self._dirty_requests.clear()
        return changes

    def drop_terminated(self) -> None:
        """Forget requests that have terminated (they are all in the store)."""
        for request_id in [r for r, req in self.requests.items() if req.status in REQUEST_TERMINAL]:
            self.unload(request_id)


def _no_record(job: JobState) -> tuple[int, float] | None:
    return None
