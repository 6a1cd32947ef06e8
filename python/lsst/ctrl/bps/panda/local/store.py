# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Persistent state of the local service: SQLite (WAL) through SQLAlchemy.

Every state change is committed before the service acts on it (a job is
recorded as running before its process starts, a result is recorded before
any child is released), so the service can be killed at any time and resumed.
"""

from __future__ import annotations

__all__ = ["Store", "deps", "event_services", "jobs", "requests", "transforms"]

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import CursorResult, Engine

from .plan import RequestPlan, WorkSpec

_META = MetaData()

requests = Table(
    "requests",
    _META,
    Column("request_id", Integer, primary_key=True),
    Column("name", String),
    Column("username", String),
    Column("workflow_id", String),
    Column("status", Integer, nullable=False),
    Column("oldstatus", Integer, nullable=False),
    Column("aborted", Boolean, nullable=False, default=False),
    Column("command", Integer, nullable=False, default=0),
    Column("site", String),
    Column("cloud", String),
    Column("queue", String),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

transforms = Table(
    "transforms",
    _META,
    Column("transform_id", Integer, primary_key=True),
    Column("request_id", Integer, nullable=False, index=True),
    Column("internal_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("executable", Text, nullable=False),
    Column("max_attempt", Integer, nullable=False),
    Column("core_count", Integer, nullable=False),
    Column("gated", Boolean, nullable=False),
    Column("released", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("released_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("retry_unless_exit", Text),
)

conditions = Table(
    "conditions",
    _META,
    Column("request_id", Integer, nullable=False, index=True),
    Column("internal_id", String, nullable=False),
    Column("spec", Text, nullable=False),
    Column("fired", Boolean, nullable=False, default=False),
)

jobs = Table(
    "jobs",
    _META,
    Column("job_id", Integer, primary_key=True),
    Column("request_id", Integer, nullable=False),
    Column("transform_id", Integer, nullable=False),
    Column("map_id", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("attempt_nr", Integer, nullable=False, default=0),
    Column("attempt_base", Integer, nullable=False, default=0),
    Column("lost_attempts", Integer, nullable=False, default=0),
    Column("panda_id", Integer),
    Column("exit_code", Integer),
    Column("job_status", String),
    Column("created_at", Float, nullable=False),
    Column("start_time", Float),
    Column("end_time", Float),
    Index("jobs_request_idx", "request_id", "transform_id"),
)

deps = Table(
    "deps",
    _META,
    Column("job_id", Integer, nullable=False, index=True),
    Column("parent_id", Integer, nullable=False),
    Column("request_id", Integer, nullable=False, index=True),
)

event_services = Table(
    "event_services",
    _META,
    Column("transform_id", Integer, primary_key=True),
    Column("request_id", Integer, nullable=False, index=True),
    Column("label", String, nullable=False),
    Column("max_events", Integer, nullable=False),
    Column("first_order_id", Integer, nullable=False),
)
"""Event-service works (event_service.py): how payloads share PanDA jobs."""

steps = Table(
    "steps",
    _META,
    Column("workflow_id", String, primary_key=True),
    Column("work_name", String, primary_key=True),
    Column("data", Text, nullable=False),
)

JOB_COLUMNS = (
    "status",
    "attempt_nr",
    "attempt_base",
    "lost_attempts",
    "panda_id",
    "exit_code",
    "job_status",
    "start_time",
    "end_time",
)
"""Mutable job columns written by the scheduler."""


_ADDED_COLUMNS = (("transforms", "retry_unless_exit", "TEXT"),)
"""Columns added after the first release: added to older databases."""


def _add_missing_columns(engine: Engine) -> None:
    with engine.begin() as conn:
        for table, column, sql_type in _ADDED_COLUMNS:
            present = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a write waits for a lock held by another connection."""


def _pragma_setter(busy_timeout: float) -> Callable[[Any, Any], None]:
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return set_pragmas


def _request_row(plan: RequestPlan, username: str, now: float) -> dict[str, Any]:
    first = plan.works[0] if plan.works else None
    return {
        "name": plan.name,
        "username": username,
        "workflow_id": plan.internal_id,
        "status": RequestStatus.Transforming.value,
        "oldstatus": RequestStatus.New.value,
        "aborted": False,
        "command": 0,
        "site": first.site if first else None,
        "cloud": first.cloud if first else None,
        "queue": first.queue if first else None,
        "created_at": now,
        "updated_at": now,
    }


def _primary_key(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("The database returned no primary key for an insert")
    return int(key[0])


def _insert_transform(conn: Connection, request_id: int, work: WorkSpec, now: float) -> int:
    values = {
        "request_id": request_id,
        "internal_id": work.internal_id,
        "name": work.name,
        "executable": work.executable,
        "max_attempt": work.max_attempt,
        "core_count": work.core_count,
        "retry_unless_exit": json.dumps(list(work.retry_unless_exit)),
        "gated": work.gated,
        "released": not work.gated,
        "status": (TransformStatus.New if work.gated else TransformStatus.Transforming).value,
        "created_at": now,
        "released_at": None if work.gated else now,
        "updated_at": now,
    }
    return _primary_key(conn.execute(transforms.insert().values(**values)))


class Store:
    """The service database.

    Parameters
    ----------
    path : `str`
        SQLite file; created with its tables if absent.
    busy_timeout : `float`, optional
        Seconds a write waits for a lock held by another connection before
        it fails with ``database is locked``.
    """

    def __init__(self, path: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.engine: Engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": busy_timeout}
        )
        event.listen(self.engine, "connect", _pragma_setter(busy_timeout))
        _META.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._insert_lock = threading.Lock()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Open a transaction, committed on exit.

        Yields
        ------
        connection : `sqlalchemy.Connection`
            The connection in the transaction.
        """
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def save_step(self, workflow_id: str, maps: dict[str, list[dict[str, Any]]]) -> None:
        """Store the dependency maps uploaded by a workflow step.

        Parameters
        ----------
        workflow_id : `str`
            Internal id of the workflow the step belongs to.
        maps : `dict` [`str`, `list`]
            Work name -> dependency map.
        """
        rows = [{"workflow_id": workflow_id, "work_name": k, "data": json.dumps(v)} for k, v in maps.items()]
        with self.begin() as conn:
            for row in rows:
                conn.execute(
                    steps.delete().where(
                        steps.c.workflow_id == row["workflow_id"], steps.c.work_name == row["work_name"]
                    )
                )
            if rows:
                conn.execute(steps.insert(), rows)

    def step_maps(self, workflow_id: str) -> dict[str, list[dict[str, Any]]]:
        """Return the dependency maps stored for a workflow's steps.

        Parameters
        ----------
        workflow_id : `str`
            Internal id of the main workflow.

        Returns
        -------
        maps : `dict` [`str`, `list`]
            Work name -> dependency map.
        """
        with self.begin() as conn:
            result = conn.execute(
                select(steps.c.work_name, steps.c.data).where(steps.c.workflow_id == workflow_id)
            )
            return {name: json.loads(data) for name, data in result}

    def insert_request(self, plan: RequestPlan, username: str) -> int:
        """Store a new request with its transforms, jobs and dependencies.

        Parameters
        ----------
        plan : `RequestPlan`
            The decoded workflow.
        username : `str`
            Owner of the request.

        Returns
        -------
        request_id : `int`
            The new request id.
        """
        now = time.time()
        with self._insert_lock, self.begin() as conn:
            result = conn.execute(requests.insert().values(**_request_row(plan, username, now)))
            request_id = _primary_key(result)
            _insert_conditions(conn, request_id, plan)
            self._insert_works(conn, request_id, plan.works, now)
        return request_id

    def add_works(self, request_id: int, plan: RequestPlan) -> list[int]:
        """Add the works and conditions of a workflow to a stored request.

        Used by ``update_build_request``: the built workflow joins the
        build request.

        Parameters
        ----------
        request_id : `int`
            The request.
        plan : `RequestPlan`
            The decoded workflow.

        Returns
        -------
        transform_ids : `list` [`int`]
            Ids of the new transforms.
        """
        now = time.time()
        with self._insert_lock, self.begin() as conn:
            before = conn.execute(select(func.max(transforms.c.transform_id))).scalar() or 0
            _insert_conditions(conn, request_id, plan)
            self._insert_works(conn, request_id, plan.works, now)
            query = select(transforms.c.transform_id).where(
                transforms.c.request_id == request_id, transforms.c.transform_id > before
            )
            return [row[0] for row in conn.execute(query)]

    def _insert_works(self, conn: Connection, request_id: int, works: list[WorkSpec], now: float) -> None:
        next_job = (conn.execute(select(func.max(jobs.c.job_id))).scalar() or 0) + 1
        job_ids: dict[tuple[str, str], int] = {}
        job_rows = []
        for work in works:
            transform_id = _insert_transform(conn, request_id, work, now)
            if work.event_service is not None:
                conn.execute(
                    event_services.insert().values(
                        transform_id=transform_id, request_id=request_id,
                        label=work.event_service.label, max_events=work.event_service.max_events,
                        first_order_id=work.event_service.first_order_id,
                    )
                )  # fmt: skip
            for job in work.jobs:
                job_ids[(work.name, job.name)] = next_job
                job_rows.append(
                    {
                        "job_id": next_job,
                        "request_id": request_id,
                        "transform_id": transform_id,
                        "map_id": job.map_id,
                        "name": job.name,
                        "status": ContentStatus.New.value,
                        "created_at": now,
                    }
                )
                next_job += 1
        dep_rows = [
            {"job_id": job_ids[(work.name, job.name)], "parent_id": job_ids[dep], "request_id": request_id}
            for work in works
            for job in work.jobs
            for dep in job.dependencies
        ]
        if job_rows:
            conn.execute(jobs.insert(), job_rows)
        if dep_rows:
            conn.execute(deps.insert(), dep_rows)


def _insert_conditions(conn: Any, request_id: int, plan: RequestPlan) -> None:
    """Store the conditions of a decoded workflow, not fired yet.

    Parameters
    ----------
    conn : `sqlalchemy.engine.Connection`
        The open transaction.
    request_id : `int`
        The request they gate works of.
    plan : `RequestPlan`
        The decoded workflow.
    """
    if not plan.conditions:
        return
    rows = [
        {
            "request_id": request_id,
            "internal_id": cond.internal_id,
            "spec": json.dumps({"tree": cond.tree, "true": cond.true_works, "false": cond.false_works}),
            "fired": False,
        }
        for cond in plan.conditions
    ]
    conn.execute(conditions.insert(), rows)
