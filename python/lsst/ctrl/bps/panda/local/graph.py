# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""In-memory job graph of the active requests and its transitions.

`RunGraph` holds no processes and does no I/O except through the connection
it is given: the runner calls it inside one transaction per batch of events,
then starts the launches it returns once that transaction is committed.
"""

from __future__ import annotations

__all__ = ["JobState", "Launch", "RunGraph", "TransformState"]

import dataclasses
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus
from sqlalchemy import Connection, bindparam, func, select, update

from lsst.ctrl.bps.panda.idds_model import (
    JOB_RETRIED,
    JOB_TERMINAL,
    REQUEST_TERMINAL,
    TRANSFORM_TERMINAL,
    transform_status,
)

from .event_service import EventService, stored_event_services
from .statuses import condition_value, request_status
from .store import JOB_COLUMNS, conditions, deps, jobs, requests, transforms

_LOG = logging.getLogger(__name__)

_RUNNABLE = (ContentStatus.Activated, ContentStatus.Failed)


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

    def row(self) -> dict[str, Any]:
        """Return the mutable columns, keyed for the bulk update."""
        values = {name: getattr(self, name) for name in JOB_COLUMNS}
        values["status"] = self.status.value
        values["b_job_id"] = self.job_id
        return values


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
    conditions: list[dict[str, Any]] = field(default_factory=list)


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
    def init_ids(self, conn: Connection) -> None:
        """Continue PanDA ids after the highest one stored.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection.
        """
        highest = conn.execute(select(jobs.c.panda_id).order_by(jobs.c.panda_id.desc()).limit(1)).scalar()
        self.next_panda_id = (highest or 0) + 1

    def active_request_ids(self, conn: Connection) -> list[int]:
        """Return the stored requests that are not terminated.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection.

        Returns
        -------
        request_ids : `list` [`int`]
            Ids in ascending order.
        """
        done = sorted(status.value for status in REQUEST_TERMINAL)
        query = select(requests.c.request_id).where(requests.c.status.not_in(done)).order_by("request_id")
        return [row[0] for row in conn.execute(query)]

    def load(self, conn: Connection, request_id: int) -> None:
        """Load a stored request and recover the jobs recorded as running.

        An attempt recorded as running whose result `recorded_exit` finds
        (it ended while the service was down) is completed with it; any
        other such attempt is lost and the job runs again.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection (may hold uncommitted changes to read back).
        request_id : `int`
            The request; nothing is done if it is loaded already.
        """
        if request_id in self.requests:
            return
        row = conn.execute(select(requests).where(requests.c.request_id == request_id)).mappings().first()
        if row is None:
            return
        req = RequestState(request_id, RequestStatus(row["status"]), bool(row["aborted"]))
        self.requests[request_id] = req
        self._load_transforms(conn, req)
        ended = self._load_jobs(conn, req)
        self._link_jobs(conn, req)
        for job_id, (exit_code, end_time) in ended.items():
            job = self.jobs[job_id]
            if job.panda_id is not None:
                self.complete(job_id, job.panda_id, exit_code, end_time)
        for cond in conn.execute(select(conditions).where(conditions.c.request_id == request_id)).mappings():
            spec = json.loads(cond["spec"])
            spec.update(internal_id=cond["internal_id"], fired=bool(cond["fired"]))
            req.conditions.append(spec)
        self._touched.add(request_id)

    def extend(self, conn: Connection, request_id: int, transform_ids: list[int]) -> None:
        """Load works added to a loaded request (a build request's workflow).

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection.
        request_id : `int`
            The request.
        transform_ids : `list` [`int`]
            The new transforms.
        """
        req = self.requests.get(request_id)
        if req is None:
            self.load(conn, request_id)
            return
        only = set(transform_ids)
        self._load_transforms(conn, req, only)
        self._load_jobs(conn, req, only)
        self._link_jobs(conn, req, only)
        known = {cond["internal_id"] for cond in req.conditions}
        for cond in conn.execute(select(conditions).where(conditions.c.request_id == request_id)).mappings():
            if cond["internal_id"] not in known:
                spec = json.loads(cond["spec"])
                spec.update(internal_id=cond["internal_id"], fired=bool(cond["fired"]))
                req.conditions.append(spec)
        self._touched.add(request_id)

    def _load_transforms(self, conn: Connection, req: RequestState, only: set[int] | None = None) -> None:
        query = select(transforms).where(transforms.c.request_id == req.request_id)
        if only is not None:
            query = query.where(transforms.c.transform_id.in_(only))
        for row in conn.execute(query).mappings():
            tf = TransformState(
                transform_id=row["transform_id"],
                request_id=req.request_id,
                internal_id=row["internal_id"],
                name=row["name"],
                executable=row["executable"],
                max_attempt=row["max_attempt"],
                core_count=row["core_count"],
                gated=bool(row["gated"]),
                released=bool(row["released"]),
                status=TransformStatus(row["status"]),
                retry_unless_exit=frozenset(json.loads(row["retry_unless_exit"] or "[]")),
            )
            self.transforms[tf.transform_id] = tf
            req.transforms[tf.internal_id] = tf
        for transform_id, event_service in stored_event_services(conn, req.request_id).items():
            if transform_id in self.transforms:
                self.transforms[transform_id].event_service = event_service

    def _load_jobs(
        self, conn: Connection, req: RequestState, only: set[int] | None = None
    ) -> dict[int, tuple[int, float]]:
        ended: dict[int, tuple[int, float]] = {}
        query = select(jobs).where(jobs.c.request_id == req.request_id).order_by(jobs.c.job_id)
        if only is not None:
            query = query.where(jobs.c.transform_id.in_(only))
        for row in conn.execute(query).mappings():
            job = JobState(
                job_id=row["job_id"],
                request_id=req.request_id,
                transform_id=row["transform_id"],
                map_id=row["map_id"],
                name=row["name"],
                status=ContentStatus(row["status"]),
                **{name: row[name] for name in JOB_COLUMNS if name != "status"},
            )
            running = job.status == ContentStatus.Processing and job.panda_id not in self.live
            result = self.recorded_exit(job) if running else None
            if result is not None:
                ended[job.job_id] = result
            elif running:
                # The service stopped while this attempt ran: run it again.
                job.lost_attempts += 1
                self._set(job, ContentStatus.Activated, "activated")
            self.jobs[job.job_id] = job
            tf = self.transforms[job.transform_id]
            tf.job_ids.append(job.job_id)
            tf.counts[job.status.value] += 1
        return ended

    def _link_jobs(self, conn: Connection, req: RequestState, only: set[int] | None = None) -> None:
        query = select(deps.c.job_id, deps.c.parent_id).where(deps.c.request_id == req.request_id)
        if only is not None:  # added transforms: their jobs have the highest ids
            first = min((j for tid in only for j in self.transforms[tid].job_ids), default=0)
            query = query.where(deps.c.job_id >= first)
        for job_id, parent_id in conn.execute(query):
            parent = self.jobs[parent_id]
            parent.children.append(job_id)
            child = self.jobs[job_id]
            if parent.status not in JOB_TERMINAL:
                child.pending += 1
            elif parent.status != ContentStatus.Available:
                child.parent_failed = True
        for tf in req.transforms.values():
            if only is None or tf.transform_id in only:
                self._queue_jobs(tf)

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

    def complete(self, job_id: int, panda_id: int, exit_code: int, end_time: float) -> str | None:
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
        outcome : `str` or `None`
            ``finished``, ``retry``, ``failed`` (attempts used up) or
            ``failed-no-retry`` (exit code in ``retryUnlessExit``); `None`
            for a stale attempt.
        """
        job = self.jobs.get(job_id)
        if job is None or job.panda_id != panda_id or job.status != ContentStatus.Processing:
            return None
        job.exit_code = exit_code
        job.end_time = end_time
        if exit_code == 0:
            self._set(job, ContentStatus.Available, "finished")
            self._ended(job)
            return "finished"
        tf = self.transforms[job.transform_id]
        used = job.attempt_nr - job.attempt_base - job.lost_attempts
        if exit_code in tf.retry_unless_exit:
            outcome = "failed-no-retry"
        elif used < tf.max_attempt:
            self._set(job, ContentStatus.Failed, "failed")
            self.ready.append(job_id)
            return "retry"
        else:
            outcome = "failed"
        self._set(job, ContentStatus.FinalFailed, "failed")
        self._ended(job)
        return outcome

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
            launches.append(self._launch(job, tf, panda_id, slots, now))
        return launches

    def _launch(self, job: JobState, tf: TransformState, panda_id: int, slots: int, now: float) -> Launch:
        """Record a PanDA job as running: one payload, or for an
        event-service work the ready payloads of its event-service file.

        Parameters
        ----------
        job : `JobState`
            The payload at the head of the queue.
        tf : `TransformState`
            Its transform.
        panda_id : `int`
            The PanDA job's id.
        slots : `int`
            Worker slots it takes.
        now : `float`
            Start time.

        Returns
        -------
        launch : `Launch`
            The first payload, the others in its ``batch``.
        """
        payloads = [job]
        es = tf.event_service
        if es is not None:

            def order_id(job_id: int) -> int | None:
                other = self.jobs.get(job_id)
                if other is None or other.transform_id != tf.transform_id or other.status not in _RUNNABLE:
                    return None
                return other.map_id

            payloads += [self.jobs[j] for j in es.siblings(job.job_id, self.ready, order_id, es.max_events)]
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

    def retry(self, conn: Connection, request_id: int) -> bool:
        """Reset failed, missing and cancelled jobs of a terminated request.

        Gated works (the final job) that already ran are reset entirely and
        wait for their condition again, so they run after the retried jobs.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection; the request is written and reloaded through it.
        request_id : `int`
            The request.

        Returns
        -------
        retried : `bool`
            `False` when the request is not terminated or had nothing to redo.
        """
        if request_id not in self.requests:
            self.load(conn, request_id)
        req = self.requests.get(request_id)
        if req is None or req.status not in REQUEST_TERMINAL:
            return False
        reset = [
            self.jobs[job_id]
            for tf in req.transforms.values()
            for job_id in tf.job_ids
            if self.jobs[job_id].status in JOB_RETRIED
        ]
        if not reset:
            return False
        _LOG.info("Request %d restarted: %d failed, missing or cancelled job(s) to run again",
                  request_id, len(reset))  # fmt: skip
        self._reset_jobs(reset)
        for tf in req.transforms.values():
            if tf.gated and tf.released:
                tf.released = False
                self._reset_jobs([self.jobs[job_id] for job_id in tf.job_ids])
        for cond in req.conditions:
            cond["fired"] = False
        req.aborted = False
        req.status = RequestStatus.Transforming
        self._dirty_requests.add(request_id)
        self.flush(conn)
        self.unload(request_id)
        self.load(conn, request_id)
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

    # ----------------------------------------------------------- derivation
    def settle(self) -> None:
        """Update transform statuses, fire conditions, update requests."""
        changed = True
        while changed:
            changed = False
            for tf_id in list(self._dirty_transforms):
                tf = self.transforms.get(tf_id)
                if tf is None or not tf.released:
                    continue
                req = self.requests[tf.request_id]
                new = transform_status(tf.counts)
                if req.aborted and new == TransformStatus.Transforming:
                    new = TransformStatus.Cancelled
                if new != tf.status:
                    tf.status = new
                    self._dirty_requests.add(tf.request_id)
            for request_id in list(self._touched | self._dirty_requests):
                maybe = self.requests.get(request_id)
                if maybe is not None and not maybe.aborted:
                    changed = self._fire_conditions(maybe) or changed
        for request_id in list(self._touched | self._dirty_requests):
            loaded = self.requests.get(request_id)
            if loaded is not None:
                self._update_request(loaded)

    def _fire_conditions(self, req: RequestState) -> bool:
        status_of = {iid: (tf.status if tf.released else None) for iid, tf in req.transforms.items()}
        fired_any = False
        for cond in req.conditions:
            if cond["fired"]:
                continue
            if condition_value(cond["tree"], status_of):
                targets = cond["true"]
            elif all(s is not None and s in TRANSFORM_TERMINAL for s in _referenced(cond["tree"], status_of)):
                targets = cond["false"]
            else:
                continue
            cond["fired"] = True
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

    # ---------------------------------------------------------------- flush
    def flush(self, conn: Connection) -> None:
        """Write every changed job, transform and request.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Connection in the batch's transaction.
        """
        now = time.time()
        if self._dirty_jobs:
            rows = [self.jobs[j].row() for j in self._dirty_jobs if j in self.jobs]
            stmt = update(jobs).where(jobs.c.job_id == bindparam("b_job_id"))
            conn.execute(stmt, rows)
        for tf_id in self._dirty_transforms:
            tf = self.transforms.get(tf_id)
            if tf is None:
                continue
            conn.execute(
                update(transforms)
                .where(transforms.c.transform_id == tf_id)
                .values(
                    status=tf.status.value,
                    released=tf.released,
                    released_at=func.coalesce(transforms.c.released_at, now) if tf.released else None,
                    updated_at=now,
                    finished_at=now if tf.status in TRANSFORM_TERMINAL else None,
                )
            )
        self._flush_requests(conn, now)
        self._dirty_jobs.clear()
        self._dirty_transforms.clear()
        self._touched.clear()

    def _flush_requests(self, conn: Connection, now: float) -> None:
        for request_id in self._dirty_requests:
            req = self.requests.get(request_id)
            if req is None:
                continue
            conn.execute(
                update(requests)
                .where(requests.c.request_id == request_id)
                .values(status=req.status.value, aborted=req.aborted, updated_at=now)
            )
            for cond in req.conditions:
                conn.execute(
                    update(conditions)
                    .where(conditions.c.request_id == request_id)
                    .where(conditions.c.internal_id == cond["internal_id"])
                    .values(fired=cond["fired"])
                )
        self._dirty_requests.clear()

    def drop_terminated(self) -> None:
        """Forget requests that have terminated (they are all in the store)."""
        for request_id in [r for r, req in self.requests.items() if req.status in REQUEST_TERMINAL]:
            self.unload(request_id)


def _no_record(job: JobState) -> tuple[int, float] | None:
    return None


def _referenced(tree: dict[str, Any], status_of: dict[str, TransformStatus | None]) -> list[Any]:
    found = []
    for clause in tree["clauses"]:
        if "clauses" in clause:
            found.extend(_referenced(clause, status_of))
        else:
            found.append(status_of.get(clause["work"]))
    return found
