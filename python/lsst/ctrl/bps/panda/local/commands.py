# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The iDDS ClientManager commands served by the local relay.

Each method takes the caller's user name and the decoded ``args``/``kwargs``
of the relay body, with the signature of the ClientManager method of the
same name (idds-client 2.6.21), and returns its result as plain JSON data.
Errors are returned as ``[False, message]`` like ClientManager's
``exception_handler``.
"""

from __future__ import annotations

__all__ = ["MAX_ID", "NO_MATCH", "REGISTERED", "BadIdError", "CommandSet"]

import hmac
import logging
from collections.abc import Callable
from typing import Any

from idds.common.constants import RequestStatus
from sqlalchemy import func, select

from .build import build_signature
from .plan import PlanError, plan_request, step_maps
from .rows import RowBuilder
from .run_events import EventKind
from .runner import Runner
from .store import Store, requests

_LOG = logging.getLogger(__name__)

_COMMANDS = frozenset(
    {
        "ping",
        "submit",
        "submit_build",
        "update_build_request",
        "get_requests",
        "abort",
        "retry",
        "get_contents_output_ext",
    }
)
"""ClientManager commands the local service serves."""

REGISTERED = [[0, {"status": 0, "message": "Command registered successfully"}]]
"""Reply of an accepted abort/retry."""

NO_MATCH = [[-1, {"message": "No match requests", "status": -1}]]
"""Reply of abort/retry for an unknown request id."""


class CommandSet:
    """ClientManager commands backed by the store and the runner.

    Parameters
    ----------
    store : `Store`
        The service database.
    runner : `Runner`
        The job runner.
    rows : `RowBuilder`
        Builds reply rows.
    """

    def __init__(self, store: Store, runner: Runner, rows: RowBuilder) -> None:
        self.store = store
        self.runner = runner
        self.rows = rows

    def lookup(self, name: str) -> Callable[..., Any] | None:
        """Return the implementation of a ClientManager command.

        Parameters
        ----------
        name : `str`
            Command name.

        Returns
        -------
        method : callable or `None`
            Called as ``method(user, *args, **kwargs)``.
        """
        if name in _COMMANDS:
            return getattr(self, f"cmd_{name}")
        return None

    def cmd_ping(self, user: str) -> dict[str, str]:
        """``ping()``: ``{"Status": "OK"}``."""
        return {"Status": "OK"}

    def cmd_submit(
        self, user: str, workflow: Any, username: str | None = None, userdn: str | None = None,
        use_dataset_name: bool = False,
    ) -> int | list[Any]:  # fmt: skip
        """``submit(workflow, ...)``: request id, or 0 for a workflow step."""
        if getattr(workflow, "is_workflow_step", False):
            maps = step_maps(workflow)
            self.store.save_step(str(workflow.get_internal_id()), maps)
            _LOG.info("Stored step %s of workflow %s", workflow.step_name, workflow.get_internal_id())
            return 0
        try:
            plan = plan_request(workflow, self.store.step_maps(str(workflow.get_internal_id())))
        except PlanError as exc:
            return [False, str(exc)]
        request_id = self.store.insert_request(plan, user)
        _LOG.info("Request %d (%s): %d works", request_id, plan.name, len(plan.works))
        self.runner.request_added(request_id)
        return request_id

    def cmd_submit_build(
        self, user: str, workflow: Any, username: str | None = None, userdn: str | None = None,
        use_dataset_name: bool = True,
    ) -> int | list[Any]:  # fmt: skip
        """``submit_build(workflow, ...)``: a build request; its id.

        The build workflow's work runs like any other; its job's
        environment carries the request id and signature that
        ``update_build_request`` checks.
        """
        return self.cmd_submit(user, workflow, username, userdn, use_dataset_name)

    def cmd_update_build_request(
        self, user: str, request_id: int, signature: str, workflow: Any
    ) -> int | list[Any]:  # fmt: skip
        """``update_build_request(request_id, signature, workflow)``.

        Adds the built workflow's works to the build request and schedules
        them; answers the request id.
        """
        rid = _as_id(request_id)
        with self.store.begin() as conn:
            owner = conn.execute(select(requests.c.username).where(requests.c.request_id == rid)).first()
        if rid is None or owner is None:
            return [False, f"No match requests for request_id {request_id}"]
        if owner[0] != user:
            return [False, f"User {user} has no permission to update request {rid}"]
        if not hmac.compare_digest(str(signature), build_signature(self.runner.state_dir, rid)):
            return [False, f"Invalid signature for build request {rid}"]
        try:
            plan = plan_request(workflow, self.store.step_maps(str(workflow.get_internal_id())))
        except PlanError as exc:
            return [False, str(exc)]
        added = self.store.add_works(rid, plan)
        _LOG.info("Build request %d: %d works of %s added", rid, len(added), plan.name)
        self.runner.request_extended(rid, added)
        return rid

    def cmd_get_requests(
        self, user: str, request_id: int | None = None, workload_id: int | None = None,
        with_detail: bool = False, with_metadata: bool = False,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """``get_requests(...)``: rows (one per transform with detail)."""
        if workload_id is not None:
            return []
        with self.store.begin() as conn:
            return self.rows.request_rows(conn, _as_id(request_id), bool(with_detail))

    def cmd_get_contents_output_ext(
        self, user: str, request_id: int | None = None, workload_id: int | None = None,
        transform_id: int | None = None, group_by_jedi_task_id: bool = False,
    ) -> dict[str, list[dict[str, Any]]] | list[Any]:  # fmt: skip
        """``get_contents_output_ext(...)``: per-job rows by transform id.

        ``workload_id`` (a JEDI task id) selects one transform like
        ``transform_id``: here every transform is its own task, with the
        same id, so ``group_by_jedi_task_id`` groups the same way.
        """
        rid = _as_id(request_id)
        if rid is None:
            return [False, "Bad request: request_id must not be None"]
        tid = _as_id(transform_id) if transform_id is not None else _as_id(workload_id)
        with self.store.begin() as conn:
            return self.rows.output_contents(conn, rid, tid)

    def cmd_abort(
        self, user: str, request_id: int | None = None, workload_id: int | None = None
    ) -> list[Any]:
        """``abort(request_id)``: kill running jobs, cancel the rest."""
        return self._control(EventKind.ABORT, user, request_id)

    def cmd_retry(
        self, user: str, request_id: int | None = None, workload_id: int | None = None
    ) -> list[Any]:
        """``retry(request_id)``: rerun failed and missing jobs."""
        return self._control(EventKind.RETRY, user, request_id)

    def _control(self, kind: EventKind, user: str, request_id: int | None) -> list[Any]:
        rid = _as_id(request_id)
        if rid is None:
            return NO_MATCH
        with self.store.begin() as conn:
            owner = conn.execute(select(requests.c.username).where(requests.c.request_id == rid)).first()
        if owner is None:
            return NO_MATCH
        if owner[0] != user:
            return [[-1, {"status": -1, "message": f"User {user} has no permission to update request {rid}"}]]
        self.runner.command(kind, rid)
        return REGISTERED

    def summary(self) -> dict[str, Any]:
        """Return the counts shown by ``panda-local status``.

        Returns
        -------
        summary : `dict`
            Requests by status name, the number of running jobs and
            ``fault``: `None`, or the failing database write being retried
            (`StoreFault` as a `dict`).
        """
        with self.store.begin() as conn:
            query = select(requests.c.status, func.count()).group_by(requests.c.status)
            by_status = {RequestStatus(s).name: n for s, n in conn.execute(query)}
        fault = self.runner.fault
        return {
            "requests": by_status,
            "running_jobs": self.runner.running_count(),
            "fault": None if fault is None else fault.as_dict(),
        }


MAX_ID = 2**63 - 1
"""Largest id SQLite stores (a signed 64-bit integer)."""


class BadIdError(ValueError):
    """An id that is not a whole number from 0 to `MAX_ID`."""


def _as_id(value: Any) -> int | None:
    if value is None or value in ("null", "None"):
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_ID:
        raise BadIdError(f"{value!r} is not a request/transform id: ids are whole numbers from 0 to {MAX_ID}")
    return number
