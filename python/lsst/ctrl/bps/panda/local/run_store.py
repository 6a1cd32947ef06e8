# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Reads and writes of the run state machine (`graph.RunGraph`).

The scheduler reads active requests as `graph.StoredRequest` values and, in
each batch's transaction, writes the `graph.RunChanges` the graph returns.
Every statement runs on the connection of the caller's transaction.
"""

from __future__ import annotations

__all__ = [
    "read_active_request_ids",
    "read_next_panda_id",
    "read_request",
    "stored_event_services",
    "write_changes",
]

import json
import time
from collections.abc import Collection
from typing import Any

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus
from sqlalchemy import Connection, bindparam, func, select, update

from lsst.ctrl.bps.panda.idds_model import REQUEST_TERMINAL, TRANSFORM_TERMINAL

from .conditions import Condition, parse_condition
from .event_service import EventService
from .graph import JobState, RequestState, RunChanges, StoredRequest, TransformState
from .store import JOB_COLUMNS, conditions, deps, event_services, jobs, requests, transforms


def read_next_panda_id(conn: Connection) -> int:
    """Return the PanDA id after the highest one stored.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection.

    Returns
    -------
    panda_id : `int`
        The next PanDA id to use.
    """
    highest = conn.execute(select(jobs.c.panda_id).order_by(jobs.c.panda_id.desc()).limit(1)).scalar()
    return (highest or 0) + 1


def read_active_request_ids(conn: Connection) -> list[int]:
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


def read_request(
    conn: Connection, request_id: int, only: Collection[int] | None = None
) -> StoredRequest | None:
    """Read a stored request for the run graph.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection (may hold uncommitted changes to read back).
    request_id : `int`
        The request.
    only : `~collections.abc.Collection` [`int`], optional
        Read only these transforms, their jobs and the dependencies of
        those jobs (works a build added to a loaded request).

    Returns
    -------
    stored : `graph.StoredRequest` or `None`
        `None` if there is no such request.
    """
    row = conn.execute(select(requests).where(requests.c.request_id == request_id)).mappings().first()
    if row is None:
        return None
    only_set = None if only is None else set(only)
    stored_jobs = _read_jobs(conn, request_id, only_set)
    # Added transforms have the highest job ids: their dependencies are those
    # from the first of their jobs on.
    first = min((job.job_id for job in stored_jobs), default=0) if only_set is not None else None
    conds, fired = _read_conditions(conn, request_id)
    return StoredRequest(
        request_id=request_id,
        status=RequestStatus(row["status"]),
        aborted=bool(row["aborted"]),
        transforms=_read_transforms(conn, request_id, only_set),
        jobs=stored_jobs,
        deps=_read_deps(conn, request_id, first),
        conditions=conds,
        fired=fired,
    )


def _read_transforms(conn: Connection, request_id: int, only: set[int] | None) -> list[TransformState]:
    query = select(transforms).where(transforms.c.request_id == request_id)
    if only is not None:
        query = query.where(transforms.c.transform_id.in_(only))
    event_service_of = stored_event_services(conn, request_id)
    return [
        TransformState(
            transform_id=row["transform_id"],
            request_id=request_id,
            internal_id=row["internal_id"],
            name=row["name"],
            executable=row["executable"],
            max_attempt=row["max_attempt"],
            core_count=row["core_count"],
            gated=bool(row["gated"]),
            released=bool(row["released"]),
            status=TransformStatus(row["status"]),
            retry_unless_exit=frozenset(json.loads(row["retry_unless_exit"] or "[]")),
            event_service=event_service_of.get(row["transform_id"]),
        )
        for row in conn.execute(query).mappings()
    ]


def _read_jobs(conn: Connection, request_id: int, only: set[int] | None) -> list[JobState]:
    query = select(jobs).where(jobs.c.request_id == request_id).order_by(jobs.c.job_id)
    if only is not None:
        query = query.where(jobs.c.transform_id.in_(only))
    return [
        JobState(
            job_id=row["job_id"],
            request_id=request_id,
            transform_id=row["transform_id"],
            map_id=row["map_id"],
            name=row["name"],
            status=ContentStatus(row["status"]),
            **{name: row[name] for name in JOB_COLUMNS if name != "status"},
        )
        for row in conn.execute(query).mappings()
    ]


def _read_deps(conn: Connection, request_id: int, first: int | None) -> list[tuple[int, int]]:
    query = select(deps.c.job_id, deps.c.parent_id).where(deps.c.request_id == request_id)
    if first is not None:
        query = query.where(deps.c.job_id >= first)
    return [(job_id, parent_id) for job_id, parent_id in conn.execute(query)]


def _read_conditions(conn: Connection, request_id: int) -> tuple[list[Condition], set[str]]:
    query = select(conditions).where(conditions.c.request_id == request_id)
    parsed, fired = [], set()
    for row in conn.execute(query).mappings():
        parsed.append(parse_condition(row["internal_id"], json.loads(row["spec"])))
        if row["fired"]:
            fired.add(row["internal_id"])
    return parsed, fired


def stored_event_services(conn: Connection, request_id: int) -> dict[int, EventService]:
    """Return the event-service works of a stored request.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection.
    request_id : `int`
        The request.

    Returns
    -------
    event_services : `dict` [`int`, `EventService`]
        Transform id to its grouping.
    """
    query = select(event_services).where(event_services.c.request_id == request_id)
    return {
        row["transform_id"]: EventService(row["label"], row["max_events"], row["first_order_id"])
        for row in conn.execute(query).mappings()
    }


def write_changes(conn: Connection, changes: RunChanges) -> None:
    """Write every changed job, transform and request.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Connection in the batch's transaction.
    changes : `graph.RunChanges`
        What `graph.RunGraph.take_changes` returned.
    """
    now = time.time()
    if changes.jobs:
        stmt = update(jobs).where(jobs.c.job_id == bindparam("b_job_id"))
        conn.execute(stmt, [_job_row(job) for job in changes.jobs])
    for tf in changes.transforms:
        conn.execute(
            update(transforms)
            .where(transforms.c.transform_id == tf.transform_id)
            .values(
                status=tf.status.value,
                released=tf.released,
                released_at=func.coalesce(transforms.c.released_at, now) if tf.released else None,
                updated_at=now,
                finished_at=now if tf.status in TRANSFORM_TERMINAL else None,
            )
        )
    for req in changes.requests:
        _write_request(conn, req, now)


def _job_row(job: JobState) -> dict[str, Any]:
    """Return the mutable columns of a job, keyed for the bulk update."""
    values = {name: getattr(job, name) for name in JOB_COLUMNS}
    values["status"] = job.status.value
    values["b_job_id"] = job.job_id
    return values


def _write_request(conn: Connection, req: RequestState, now: float) -> None:
    conn.execute(
        update(requests)
        .where(requests.c.request_id == req.request_id)
        .values(status=req.status.value, aborted=req.aborted, updated_at=now)
    )
    for cond in req.conditions:
        conn.execute(
            update(conditions)
            .where(conditions.c.request_id == req.request_id)
            .where(conditions.c.internal_id == cond.internal_id)
            .values(fired=cond.internal_id in req.fired)
        )
