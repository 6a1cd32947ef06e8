# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""What an operator wants to know about runs: read from the store.

Runs (requests), their tasks with job counts by state, and jobs with their
label, bps job name, state, attempts, exit code and stderr file. States use
the names ``bps report`` prints (`JOB_STATES`). Used by the service's
``/panda-local/api`` routes and its monitor page.
"""

from __future__ import annotations

__all__ = [
    "JOB_STATES",
    "JobLine",
    "RunSummary",
    "TaskSummary",
    "job_lines",
    "run_summaries",
    "stderr_tail",
    "task_summaries",
]

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from idds.common.constants import ContentStatus, RequestStatus
from sqlalchemy import Connection, func, select

from .layout import PAYLOAD_STDERR, StateLayout
from .naming import STATE_ORDER, bps_job_name, task_label
from .store import jobs, requests, transforms

JOB_STATES = {
    ContentStatus.New: "UNREADY",
    ContentStatus.Activated: "READY",
    ContentStatus.Processing: "RUNNING",
    ContentStatus.Failed: "READY",
    ContentStatus.Available: "SUCCEEDED",
    ContentStatus.FinalFailed: "FAILED",
    ContentStatus.Missing: "PRUNED",
    ContentStatus.Cancelled: "DELETED",
}
"""Job status -> the state name ``bps report`` uses (a failed attempt
waiting for its retry is READY; a job skipped after a failed parent is
PRUNED)."""

ACTIVE_RUN_STATUSES = frozenset({"New", "Ready", "Transforming", "ToCancel", "Cancelling"})
"""Request statuses of a run that has not ended."""


def _state(status: int) -> str:
    try:
        return JOB_STATES.get(ContentStatus(status), ContentStatus(status).name.upper())
    except ValueError:
        return "UNKNOWN"


def _ordered(counts: Counter[str]) -> dict[str, int]:
    known = {name: counts[name] for name in STATE_ORDER if counts.get(name)}
    return known | {name: n for name, n in sorted(counts.items()) if name not in known and n}


@dataclass(frozen=True)
class RunSummary:
    """One run (request) and its job counts."""

    request_id: int
    name: str
    user: str
    status: str
    created_at: float
    updated_at: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether the run has not ended."""
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def total(self) -> int:
        """Number of jobs."""
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        """Seconds from submission to now (active) or to its last change."""
        return (time.time() if self.active else self.updated_at) - self.created_at

    def as_dict(self) -> dict[str, Any]:
        """Return the fields plus ``active``, ``total`` and ``elapsed``."""
        return asdict(self) | {"active": self.active, "total": self.total, "elapsed": self.elapsed}


@dataclass(frozen=True)
class TaskSummary:
    """One task (transform) of a run and its job counts."""

    task_name: str
    label: str
    counts: dict[str, int]


@dataclass(frozen=True)
class JobLine:
    """One job as ``panda-local jobs`` prints it."""

    label: str
    job_name: str
    state: str
    attempts: int
    exit_code: int | None
    stderr: str | None
    """The last attempt's ``payload.stderr`` (`None` if it never ran)."""
    panda_id: int | None
    task_name: str


def run_summaries(conn: Connection, request_id: int | None = None) -> list[RunSummary]:
    """Return runs, newest first, with their job counts by state.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection.
    request_id : `int`, optional
        Only this run.

    Returns
    -------
    runs : `list` [`RunSummary`]
        The runs.
    """
    query = select(requests).order_by(requests.c.request_id.desc())
    counting = select(jobs.c.request_id, jobs.c.status, func.count()).group_by(
        jobs.c.request_id, jobs.c.status
    )
    if request_id is not None:
        query = query.where(requests.c.request_id == request_id)
        counting = counting.where(jobs.c.request_id == request_id)
    counts: dict[int, Counter[str]] = {}
    for rid, status, number in conn.execute(counting):
        counts.setdefault(rid, Counter())[_state(status)] += number
    return [
        RunSummary(
            request_id=row["request_id"],
            name=row["name"] or "",
            user=row["username"] or "",
            status=RequestStatus(row["status"]).name,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            counts=_ordered(counts.get(row["request_id"], Counter())),
        )  # fmt: skip
        for row in conn.execute(query).mappings()
    ]


def task_summaries(conn: Connection, request_id: int) -> list[TaskSummary]:
    """Return the tasks of a run in submission order with counts by state.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection.
    request_id : `int`
        The run.

    Returns
    -------
    tasks : `list` [`TaskSummary`]
        The tasks.
    """
    query_names = (
        select(transforms.c.transform_id, transforms.c.name)
        .where(transforms.c.request_id == request_id)
        .order_by(transforms.c.transform_id)
    )
    names: dict[int, str] = {tid: name for tid, name in conn.execute(query_names)}  # noqa: C416 - rows
    counts: dict[int, Counter[str]] = {tid: Counter() for tid in names}
    query = (
        select(jobs.c.transform_id, jobs.c.status, func.count())
        .where(jobs.c.request_id == request_id)
        .group_by(jobs.c.transform_id, jobs.c.status)
    )
    for tid, status, number in conn.execute(query):
        counts.setdefault(tid, Counter())[_state(status)] += number
    return [TaskSummary(name, task_label(name), _ordered(counts[tid])) for tid, name in names.items()]


def job_lines(conn: Connection, request_id: int, layout: StateLayout) -> list[JobLine]:
    """Return every job of a run, by task then order.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        Open connection.
    request_id : `int`
        The run.
    layout : `StateLayout`
        Where the job directories are.

    Returns
    -------
    lines : `list` [`JobLine`]
        One per job.
    """
    query = (
        select(jobs, transforms.c.name.label("task_name"))
        .join(transforms, transforms.c.transform_id == jobs.c.transform_id)
        .where(jobs.c.request_id == request_id)
        .order_by(jobs.c.transform_id, jobs.c.map_id)
    )
    lines = []
    for row in conn.execute(query).mappings():
        attempt = row["attempt_nr"]
        stderr = None
        if attempt:
            workdir = layout.attempt_dir(request_id, row["task_name"], row["name"], attempt)
            stderr = os.path.join(workdir, PAYLOAD_STDERR)
        lines.append(
            JobLine(
                label=task_label(row["task_name"]),
                job_name=bps_job_name(row["name"]),
                state=_state(row["status"]),
                attempts=attempt,
                exit_code=row["exit_code"],
                stderr=stderr,
                panda_id=row["panda_id"],
                task_name=row["task_name"],
            )  # fmt: skip
        )
    return lines


def stderr_tail(path: str | None, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """Return the last lines of a stderr file.

    Parameters
    ----------
    path : `str` or `None`
        The file.
    lines : `int`, optional
        How many lines.
    max_bytes : `int`, optional
        Read at most this many bytes from the end.

    Returns
    -------
    text : `str`
        The lines (empty when the file is absent or empty).
    """
    if not path:
        return ""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(0, stream.tell() - max_bytes))
            data = stream.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").rstrip("\n").splitlines()[-lines:])
