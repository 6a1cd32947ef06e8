"""In-memory stand-ins for the iDDS transport, answering in the real schema.

`FakeIDDSServer` implements the transport Protocol of
``lsst.ctrl.bps.panda.idds_transport`` (``ping``, ``submit``,
``get_requests``, ``abort``, ``retry``, ``get_contents_output_ext``) over a
small stateful model of requests, transforms and jobs.  Its rows are copies
of the recorded relay reply (``tests/data/relay-get_requests-*.json``) with
values replaced, so keys, enum encodings, date formats and iDDS quirks
(null ``request_id`` while young, null counters, no row for gated works)
match the real server.  Errors are raised as the real transport raises them
(`IDDSRequestError`, `PanDAUnreachableError`), on demand via `fail_next`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from idds.common.constants import (
    CollectionStatus,
    ContentStatus,
    ProcessingStatus,
    RequestStatus,
    TransformStatus,
)

from lsst.ctrl.bps.panda.exceptions import IDDSRequestError
from lsst.ctrl.bps.panda.idds_model import (
    COUNTER_BUCKETS,
    DATE_FORMAT,
    JOB_RETRIED,
    JOB_TERMINAL,
    bucket_of,
    transform_status,
)

DATA = Path(__file__).parent / "data"


def load_sample(name: str) -> list[dict[str, Any]]:
    """Return the rows of a recorded relay reply (``[true, rows]``)."""
    flag, rows = json.loads((DATA / name).read_text())
    assert flag is True
    return rows


DETAIL_TEMPLATE = load_sample("relay-get_requests-detail.response.json")[0]
NODETAIL_TEMPLATE = load_sample("relay-get_requests-nodetail.response.json")[0]
DETAIL_ONLY_KEYS = sorted(set(DETAIL_TEMPLATE) - set(NODETAIL_TEMPLATE))

# A fake job can be put in Failed directly; a retry resets it too.
_RETRYABLE = JOB_RETRIED | {ContentStatus.Failed}
_JOB_STATUS = {
    ContentStatus.New: None,
    ContentStatus.PreProcessing: "defined",
    ContentStatus.Activated: "activated",
    ContentStatus.Processing: "running",
    ContentStatus.Available: "finished",
    ContentStatus.Failed: "failed",
    ContentStatus.FinalFailed: "failed",
    ContentStatus.Missing: None,
    ContentStatus.Cancelled: "cancelled",
}
NULLABLE_COUNTERS = ("failed", "missing", "activated", "preprocessing")
"""Counters the real server shows as null, not 0 (doc/wire-protocol.md §8)."""


def enum_dict(member: Enum) -> dict[str, Any]:
    """Encode an iDDS enum member the way the relay does."""
    return {
        "class": type(member).__name__,
        "module": "idds.common.constants",
        "attributes": {
            "_value_": member.value,
            "_name_": member.name,
            "_sort_order_": member.value,
            "_loading": False,
        },
    }


def fmt_date(when: datetime.datetime | None) -> str | None:
    """Format a date the way iDDS does."""
    return when.strftime(DATE_FORMAT) if when is not None else None


@dataclasses.dataclass
class FakeJob:
    """One job (one output content) of a task."""

    name: str
    status: ContentStatus = ContentStatus.New
    attempt_nr: int = 0
    exit_code: int | str | None = None
    panda_id: int | None = None


@dataclasses.dataclass
class FakeTask:
    """One work / transform of a request."""

    transform_id: int
    name: str
    jobs: list[FakeJob]
    released: bool = True
    workload_id: int | None = None
    status: TransformStatus = TransformStatus.Transforming


@dataclasses.dataclass
class FakeRequest:
    """One iDDS request."""

    request_id: int
    name: str
    username: str
    tasks: list[FakeTask]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    status: RequestStatus = RequestStatus.Transforming
    young: bool = False
    cancel_requested: bool = False
    forced_status: RequestStatus | None = None


class FakeIDDSServer:
    """A stateful in-memory iDDS behind the transport Protocol.

    Parameters
    ----------
    username : `str`
        The iDDS user name of the caller (``username`` of new requests).
    null_zero_counters : `bool`
        Show the counters named in `NULLABLE_COUNTERS` as null while 0.
    jedi : `bool`
        Give released tasks a JEDI task id (``transform_workload_id``) and a
        non-zero ``output_total_files``; without, both stay null/0.
    """

    def __init__(self, username: str = "Test User", null_zero_counters: bool = True, jedi: bool = True):
        self.username = username
        self.null_zero_counters = null_zero_counters
        self.jedi = jedi
        self.requests: dict[int, FakeRequest] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._failures: dict[str, list[Exception]] = {}
        self._next_request = 1
        self._next_transform = 1
        self._next_panda_id = 1000
        self.now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self.row_edits: list[Callable[[dict[str, Any]], None]] = []
        """Applied in turn to every request row served (e.g. to serve what
        the local service adds, or a status this fake never sets)."""

    # ------------------------------------------------------------ set-up
    def add_run(
        self,
        name: str,
        tasks: Mapping[str, int],
        *,
        gated: Iterable[str] = (),
        username: str | None = None,
        young: bool = False,
        age_days: float = 0.0,
    ) -> int:
        """Create a request; return its id.

        Parameters
        ----------
        name : `str`
            Request (workflow) name.
        tasks : `~collections.abc.Mapping` [`str`, `int`]
            Task name -> number of jobs, in order.
        gated : iterable of `str`
            Tasks not released until `release` (e.g. the final job).
        username : `str`, optional
            Owner (default: the server's caller).
        young : `bool`
            No transform exists yet (detail rows carry null ids).
        age_days : `float`
            How long ago the request was created and last updated.
        """
        request_id = self._next_request
        self._next_request += 1
        when = self.now - datetime.timedelta(days=age_days)
        gated = set(gated)
        fake_tasks = []
        for task_name, njobs in tasks.items():
            jobs = [FakeJob(f"{task_name}_job{i}+qgraphNodeId:{i}+qgraphId:") for i in range(njobs)]
            fake_tasks.append(FakeTask(self._next_transform, task_name, jobs, task_name not in gated))
            self._next_transform += 1
        request = FakeRequest(
            request_id, name, username or self.username, fake_tasks, when, when, young=young
        )
        self.requests[request_id] = request
        for task in fake_tasks:
            if task.released:
                self._release(task)
        self._derive(request)
        return request_id

    def _release(self, task: FakeTask) -> None:
        task.released = True
        if self.jedi and task.workload_id is None:
            task.workload_id = 5000 + task.transform_id

    def task(self, request_id: int, task_name: str) -> FakeTask:
        """Return a task of a request by name."""
        return next(t for t in self.requests[request_id].tasks if t.name == task_name)

    def release(self, request_id: int, task_name: str) -> None:
        """Release a gated task (its condition fired)."""
        self._release(self.task(request_id, task_name))
        self._derive(self.requests[request_id])

    def set_jobs(
        self, request_id: int, task_name: str, statuses: Mapping[ContentStatus, int], exit_code: int | str = 1
    ) -> None:
        """Set the status of the first jobs of a task, in the given order.

        Failed jobs get ``exit_code``, succeeded ones 0; every job that has
        started gets a PanDA id and at least one attempt.
        """
        jobs = iter(self.task(request_id, task_name).jobs)
        for status, number in statuses.items():
            for _ in range(number):
                job = next(jobs)
                job.status = status
                self._start(job, status, exit_code)
        self._derive(self.requests[request_id])

    def _start(self, job: FakeJob, status: ContentStatus, exit_code: int | str) -> None:
        if status in (ContentStatus.New, ContentStatus.Missing):
            return
        if job.panda_id is None:
            job.panda_id = self._next_panda_id
            self._next_panda_id += 1
        job.attempt_nr = max(job.attempt_nr, 1)
        if status in (ContentStatus.Failed, ContentStatus.FinalFailed):
            job.exit_code = exit_code
        elif status is ContentStatus.Available:
            job.exit_code = 0

    def finish_all(self, request_id: int) -> None:
        """Let every job of every task succeed (releasing gated tasks)."""
        for task in self.requests[request_id].tasks:
            self._release(task)
            for job in task.jobs:
                job.status = ContentStatus.Available
                self._start(job, ContentStatus.Available, 0)
        self._derive(self.requests[request_id])

    def force_status(self, request_id: int, status: RequestStatus | None) -> None:
        """Pin the request status (e.g. ``Suspended``), `None` to derive it."""
        self.requests[request_id].forced_status = status
        self._derive(self.requests[request_id])

    def fail_next(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error``."""
        self._failures.setdefault(method, []).extend([error] * times)

    # ------------------------------------------------------- derivation
    def _derive(self, request: FakeRequest) -> None:
        for task in request.tasks:
            if task.released:
                task.status = transform_status(Counter(job.status.value for job in task.jobs))
        request.updated_at = self.now
        if request.forced_status is not None:
            request.status = request.forced_status
            return
        released = [t.status for t in request.tasks if t.released]
        terminal = all(s is not TransformStatus.Transforming for s in released)
        all_released = all(t.released for t in request.tasks)
        if request.cancel_requested:
            request.status = RequestStatus.Cancelled if terminal else RequestStatus.Cancelling
        elif not terminal or not all_released:
            # Running, or a gated work waits for its condition (final job).
            request.status = RequestStatus.Transforming
        elif all(s is TransformStatus.Finished for s in released):
            request.status = RequestStatus.Finished
        elif all(s is TransformStatus.Failed for s in released):
            request.status = RequestStatus.Failed
        else:
            request.status = RequestStatus.SubFinished

    # ------------------------------------------------------ transport API
    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        queue = self._failures.get(method)
        if queue:
            raise queue.pop(0)

    def ping(self) -> dict[str, str]:
        """Return ``{"Status": "OK"}``."""
        self._call("ping")
        return {"Status": "OK"}

    def submit(self, request: Any, *, request_cache: str) -> int:
        """Create a request from an `EncodedRequest` (works not independent
        are gated)."""
        workflow = request.workflow
        self._call("submit", workflow)
        works = workflow.get_all_works()
        independent = set(workflow.independent_works)
        tasks = {work.task_name: max(1, len(work.dependency_map or [])) for work in works}
        gated = [work.task_name for work in works if work.get_internal_id() not in independent]
        return self.add_run(workflow.name, tasks, gated=gated)

    def get_requests(self, request_id: int | None = None, with_detail: bool = False) -> list[dict[str, Any]]:
        """Rows like the relay's (one per released transform with detail)."""
        self._call("get_requests", request_id, with_detail)
        if request_id is None:
            selected = [self.requests[key] for key in sorted(self.requests)]
        else:
            selected = [self.requests[request_id]] if request_id in self.requests else []
        rows: list[dict[str, Any]] = []
        for request in selected:
            if not with_detail:
                rows.append(self._request_row(request, NODETAIL_TEMPLATE))
                continue
            released = [t for t in request.tasks if t.released and not request.young]
            for task in released or [None]:
                rows.append(self._detail_row(request, task))
        return rows

    def abort(self, request_id: int) -> str:
        """Cancel the request's unfinished jobs."""
        self._call("abort", request_id)
        request = self._owned(request_id, "abort")
        request.cancel_requested = True
        for task in request.tasks:
            for job in task.jobs:
                if job.status not in JOB_TERMINAL:
                    job.status = ContentStatus.Cancelled
        self._derive(request)
        return "Command registered successfully"

    def retry(self, request_id: int) -> str:
        """Put failed, missing and cancelled jobs back to New."""
        self._call("retry", request_id)
        request = self._owned(request_id, "retry")
        request.cancel_requested = False
        request.forced_status = None
        for task in request.tasks:
            for job in task.jobs:
                if job.status in _RETRYABLE:
                    job.status = ContentStatus.New
        self._derive(request)
        return "Command registered successfully"

    def get_contents_output_ext(self, request_id: int, workload_id: int | None) -> dict[str, list[dict]]:
        """Per-job rows of released tasks, grouped by transform id."""
        self._call("get_contents_output_ext", request_id, workload_id)
        request = self.requests.get(request_id)
        if request is None:
            return {}
        groups: dict[str, list[dict]] = {}
        for task in request.tasks:
            if not task.released or (workload_id is not None and task.workload_id != workload_id):
                continue
            groups[str(task.transform_id)] = [
                self._content_row(request, task, i) for i in range(len(task.jobs))
            ]
        return groups

    def _owned(self, request_id: int, operation: str) -> FakeRequest:
        request = self.requests.get(request_id)
        if request is None:
            raise IDDSRequestError(operation, request_id, "No match requests")
        if request.username != self.username:
            raise IDDSRequestError(
                operation,
                request_id,
                f"User {self.username} has no permission to update request {request_id}",
            )
        return request

    # ------------------------------------------------------------- rows
    def _request_row(self, request: FakeRequest, template: Mapping[str, Any]) -> dict[str, Any]:
        row = copy.deepcopy(dict(template))
        row.update(
            request_id=request.request_id,
            name=request.name,
            username=request.username,
            status=enum_dict(request.status),
            created_at=fmt_date(request.created_at),
            updated_at=fmt_date(request.updated_at),
            accessed_at=fmt_date(request.updated_at),
        )
        for edit in self.row_edits:
            edit(row)
        return row

    def _detail_row(self, request: FakeRequest, task: FakeTask | None) -> dict[str, Any]:
        row = self._request_row(request, DETAIL_TEMPLATE)
        if task is None:
            row.update(dict.fromkeys(DETAIL_ONLY_KEYS))
            row["request_id"] = None
            return row
        tid = task.transform_id
        row.update(
            transform_id=tid,
            transform_name=task.name,
            transform_status=enum_dict(task.status),
            transform_workload_id=task.workload_id,
            processing_id=tid,
            processing_transform_id=tid,
            processing_workload_id=task.workload_id,
            processing_status=enum_dict(_processing_status(task.status)),
            input_coll_transform_id=tid,
            output_coll_transform_id=tid,
            input_coll_id=2 * tid - 1,
            output_coll_id=2 * tid,
            input_coll_status=enum_dict(CollectionStatus.Open),
            output_coll_status=enum_dict(CollectionStatus.Open),
        )
        for prefix in ("input", "output"):
            row.update(self._counters(prefix, task))
        return row

    def _counters(self, prefix: str, task: FakeTask) -> dict[str, int | None]:
        counts = dict.fromkeys(COUNTER_BUCKETS, 0)
        if task.workload_id is not None:
            for job in task.jobs:
                counts[bucket_of(job.status)] += 1
        total = len(task.jobs) if task.workload_id is not None else 0
        out: dict[str, int | None] = {f"{prefix}_total_files": total}
        for key, value in counts.items():
            null = self.null_zero_counters and value == 0 and key in NULLABLE_COUNTERS
            out[f"{prefix}_{key}_files"] = None if null else value
        return out

    def _content_row(self, request: FakeRequest, task: FakeTask, index: int) -> dict[str, Any]:
        job = task.jobs[index]
        return {
            "content_id": 100000 + 1000 * task.transform_id + index,
            "transform_id": task.transform_id,
            "request_id": request.request_id,
            "workload_id": task.workload_id,
            "map_id": index + 1,
            "scope": "pseudo_dataset",
            "name": job.name,
            "status": enum_dict(job.status),
            "substatus": enum_dict(job.status),
            "panda_id": job.panda_id,
            "attempt_nr": job.attempt_nr,
            "max_attempt": 3,
            "job_status": _JOB_STATUS.get(job.status),
            "job_name": f"{task.name}_{request.request_id}_{task.transform_id}.{index + 1}",
            "trans_exit_code": None if job.exit_code is None else str(job.exit_code),
            "exe_error_code": job.exit_code,
            "pilot_error_code": 0 if job.panda_id else None,
            "jedi_task_id": task.workload_id,
        }


def _processing_status(status: TransformStatus) -> ProcessingStatus:
    return {
        TransformStatus.Finished: ProcessingStatus.Finished,
        TransformStatus.SubFinished: ProcessingStatus.SubFinished,
        TransformStatus.Failed: ProcessingStatus.Failed,
        TransformStatus.Cancelled: ProcessingStatus.Cancelled,
    }.get(status, ProcessingStatus.Running)
