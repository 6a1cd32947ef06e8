# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Reply rows in the iDDS schema: ``get_requests`` and contents ext.

Keys, enum encodings and date formats follow the recorded replies of the
real relay (``tests/data/``). Differences, by design: the counters and
``total_transforms``-style columns are numbers from the start (iDDS shows
`None` for a young request), ``transform_workload_id`` is the transform id
(there is no JEDI), and input counters mirror the output ones.
"""

from __future__ import annotations

__all__ = ["RowBuilder"]

import os
import socket
import threading
from collections import Counter, defaultdict
from typing import Any

from idds.common.constants import (
    CollectionStatus,
    CommandType,
    ContentRelationType,
    ContentStatus,
    ContentType,
    ProcessingStatus,
    RequestLocking,
    RequestStatus,
    RequestType,
    TransformStatus,
    TransformType,
)
from sqlalchemy import Connection, func, select

from lsst.ctrl.bps.panda.constants import LOCAL_SERVICE_NAME
from lsst.ctrl.bps.panda.idds_model import COUNTER_BUCKETS, TRANSFORM_TERMINAL

from .layout import PAYLOAD_STDERR, StateLayout
from .run_store import stored_event_services
from .statuses import counters
from .store import jobs, requests, transforms
from .wire import enum_dict, format_date, format_period

_PROCESSING_OF = {
    TransformStatus.Finished: ProcessingStatus.Finished,
    TransformStatus.SubFinished: ProcessingStatus.SubFinished,
    TransformStatus.Failed: ProcessingStatus.Failed,
    TransformStatus.Cancelled: ProcessingStatus.Cancelled,
}
_COLL_OF = {
    TransformStatus.Finished: CollectionStatus.Closed,
    TransformStatus.SubFinished: CollectionStatus.SubClosed,
    TransformStatus.Failed: CollectionStatus.SubClosed,
    TransformStatus.Cancelled: CollectionStatus.Cancelled,
}
_EXT_NONE = (
    "job_definition_id", "prod_source_label", "assigned_priority", "current_priority", "max_cpu_count",
    "max_cpu_unit", "max_disk_count", "max_disk_unit", "min_ram_count", "min_ram_unit",
    "cpu_consumption_time", "cpu_consumption_unit", "pilot_error_diag", "sup_error_code", "sup_error_diag",
    "ddm_error_code", "ddm_error_diag", "brokerage_error_code", "brokerage_error_diag",
    "job_dispatcher_error_code", "job_dispatcher_error_diag", "task_buffer_error_code",
    "task_buffer_error_diag", "computing_element", "grid", "cpu_conversion", "vo", "pilot_timing",
    "working_group", "processing_type", "actual_core_count", "max_rss", "max_vmem", "max_swap", "max_pss",
    "avg_rss", "avg_vmem", "avg_swap", "avg_pss", "max_walltime", "disk_io", "failed_attempt", "hs06",
    "hs06sec", "memory_leak", "memory_leak_x2", "job_label", "content_dep_id", "name_md5",
    "scope_name_md5", "bytes", "md5", "adler32", "storage_id", "external_coll_id", "external_content_id",
    "external_event_id", "external_event_status", "path", "expired_at", "content_metadata",
)  # fmt: skip


class RowBuilder:
    """Build reply rows from the store.

    Parameters
    ----------
    layout : `StateLayout`
        State directory layout (for attempt directories).
    """

    def __init__(self, layout: StateLayout) -> None:
        self.layout = layout
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._thread_id = threading.main_thread().ident

    # ------------------------------------------------------------ requests
    def request_rows(
        self, conn: Connection, request_id: int | None, with_detail: bool
    ) -> list[dict[str, Any]]:
        """Rows of ``get_requests``.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection.
        request_id : `int` or `None`
            One request, or all.
        with_detail : `bool`
            Add one row per released transform with its counters.

        Returns
        -------
        rows : `list` [`dict`]
            Ordered by request id then transform id.
        """
        query = select(requests).order_by(requests.c.request_id)
        if request_id is not None:
            query = query.where(requests.c.request_id == request_id)
        rows = []
        for req in conn.execute(query).mappings():
            tfs = self._transforms(conn, req["request_id"])
            base = self._request_row(req, tfs)
            if not with_detail:
                rows.append(_sorted(base))
                continue
            released: list[dict[str, Any] | None] = [tf for tf in tfs if tf["released"]]
            counts = self._counts(conn, req["request_id"]) if released else {}
            for tf in released or [None]:
                rows.append(_sorted(self._detail_row(base, tf, counts)))
        return rows

    def _transforms(self, conn: Connection, request_id: int) -> list[dict[str, Any]]:
        query = select(transforms).where(transforms.c.request_id == request_id).order_by("transform_id")
        return [dict(row) for row in conn.execute(query).mappings()]

    def _counts(self, conn: Connection, request_id: int) -> dict[int, Counter[int]]:
        query = (
            select(jobs.c.transform_id, jobs.c.status, func.count())
            .where(jobs.c.request_id == request_id)
            .group_by(jobs.c.transform_id, jobs.c.status)
        )
        counts: dict[int, Counter[int]] = defaultdict(Counter)
        for transform_id, status, number in conn.execute(query):
            counts[transform_id][status] = number
        return counts

    def _request_row(self, req: Any, tfs: list[dict[str, Any]]) -> dict[str, Any]:
        released = [TransformStatus(tf["status"]) for tf in tfs if tf["released"]]
        return {
            "request_id": req["request_id"], "scope": "workflow", "name": req["name"], "requester": "panda",
            "request_type": enum_dict(RequestType.Workflow), "username": req["username"], "userdn": None,
            "transform_tag": "workflow", "workload_id": None, "group_id": None, "priority": 0,
            "status": enum_dict(RequestStatus(req["status"])), "substatus": enum_dict(RequestStatus.New),
            "oldstatus": enum_dict(RequestStatus(req["oldstatus"])),
            "locking": enum_dict(RequestLocking.Idle),
            "command": enum_dict(CommandType.NoneCommand),
            "total_transforms": len(released),
            "finished_transforms": released.count(TransformStatus.Finished),
            "subfinished_transforms": released.count(TransformStatus.SubFinished),
            "failed_transforms": released.count(TransformStatus.Failed),
            "processing_transforms": sum(1 for s in released if s not in TRANSFORM_TERMINAL),
            "created_at": format_date(req["created_at"]), "updated_at": format_date(req["updated_at"]),
            "next_poll_at": format_date(req["updated_at"]), "accessed_at": format_date(req["updated_at"]),
            "expired_at": None, "new_retries": 0, "update_retries": 0, "max_new_retries": 3,
            "max_update_retries": 0, "new_poll_period": format_period(5),
            "update_poll_period": format_period(10),
            "additional_data_storage": self.layout.root, "cloud": req["cloud"], "site": req["site"],
            "queue": req["queue"], "locking_hostname": self._host, "locking_pid": self._pid,
            "locking_thread_id": self._thread_id, "locking_thread_name": LOCAL_SERVICE_NAME,
            "campaign": None, "campaign_scope": "Default", "campaign_group": None, "campaign_tag": None,
            "errors": None,
        }  # fmt: skip

    def _detail_row(
        self, base: dict[str, Any], tf: dict[str, Any] | None, counts: dict[int, Counter[int]]
    ) -> dict[str, Any]:
        row = dict(base)
        if tf is None:
            # iDDS quirk: request_id comes from the (absent) transform.
            row["request_id"] = None
            row.update(dict.fromkeys(_DETAIL_KEYS))
            return row
        tid = tf["transform_id"]
        status = TransformStatus(tf["status"])
        by_status = counts.get(tid, Counter())
        running = by_status.get(ContentStatus.Processing.value, 0) > 0
        default = ProcessingStatus.Running if running else ProcessingStatus.Submitted
        processing = _PROCESSING_OF.get(status, default)
        row.update(
            transform_id=tid, transform_type=enum_dict(TransformType.Workflow), transform_name=tf["name"],
            transform_workload_id=tid, transform_status=enum_dict(status),
            transform_created_at=format_date(tf["released_at"] or tf["created_at"]),
            transform_updated_at=format_date(tf["updated_at"]),
            transform_finished_at=format_date(tf["finished_at"]),
            processing_id=tid, processing_transform_id=tid, processing_workload_id=tid,
            processing_status=enum_dict(processing),
            processing_created_at=format_date(tf["released_at"] or tf["created_at"]),
            processing_updated_at=format_date(tf["updated_at"]),
            processing_finished_at=format_date(tf["finished_at"]),
        )  # fmt: skip
        coll = _COLL_OF.get(status, CollectionStatus.Open)
        numbers = counters(by_status)
        for prefix, coll_id in (("input", 2 * tid - 1), ("output", 2 * tid)):
            row.update(_collection(prefix, coll_id, tid, coll, numbers))
        return row

    # --------------------------------------------------------------- contents
    def output_contents(
        self, conn: Connection, request_id: int, transform_id: int | None
    ) -> dict[str, list[dict[str, Any]]]:
        """Rows of ``get_contents_output_ext``, grouped by transform id.

        Parameters
        ----------
        conn : `sqlalchemy.Connection`
            Open connection.
        request_id : `int`
            The request.
        transform_id : `int` or `None`
            Only this transform.

        Returns
        -------
        groups : `dict` [`str`, `list` [`dict`]]
            One row per job of each released transform.
        """
        query = (
            select(jobs, transforms.c.name.label("task_name"), transforms.c.max_attempt,
                   transforms.c.core_count, requests.c.username, requests.c.site, requests.c.cloud)
            .join(transforms, transforms.c.transform_id == jobs.c.transform_id)
            .join(requests, requests.c.request_id == jobs.c.request_id)
            .where(jobs.c.request_id == request_id, transforms.c.released.is_(True))
            .order_by(jobs.c.transform_id, jobs.c.map_id)
        )  # fmt: skip
        if transform_id is not None:
            query = query.where(jobs.c.transform_id == transform_id)
        groups: dict[str, list[dict[str, Any]]] = {}
        event_services = stored_event_services(conn, request_id)
        for job in conn.execute(query).mappings():
            row = self._content_row(job)
            event_service = event_services.get(job["transform_id"])
            if event_service is not None:
                row.update(event_service.content_fields(job["map_id"]))
            groups.setdefault(str(job["transform_id"]), []).append(_sorted(row))
        return groups

    def _content_row(self, job: Any) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(_EXT_NONE)
        tid = job["transform_id"]
        status = ContentStatus(job["status"])
        attempt = job["attempt_nr"]
        workdir = None
        if job["panda_id"]:
            workdir = self.layout.attempt_dir(job["request_id"], job["task_name"], job["name"], attempt)
        failed = job["exit_code"] not in (None, 0)
        diag = f"exit code {job['exit_code']}; see {workdir}/{PAYLOAD_STDERR}" if failed else None
        row.update(
            content_id=job["job_id"], transform_id=tid, coll_id=2 * tid, request_id=job["request_id"],
            workload_id=tid, map_id=job["map_id"], scope="pseudo_dataset", name=job["name"],
            min_id=0, max_id=1,
            content_type=enum_dict(ContentType.File),
            content_relation_type=enum_dict(ContentRelationType.Output), status=status.name,
            substatus=enum_dict(status), locking=enum_dict(RequestLocking.Idle), processing_id=tid,
            retries=max(0, attempt - 1), created_at=format_date(job["created_at"]),
            updated_at=format_date(job["end_time"] or job["start_time"] or job["created_at"]),
            accessed_at=format_date(job["end_time"] or job["start_time"] or job["created_at"]),
            panda_id=job["panda_id"], scheduler_id=LOCAL_SERVICE_NAME, pilot_id=workdir,
            creation_time=format_date(job["created_at"]), modification_time=format_date(job["end_time"]),
            start_time=format_date(job["start_time"]), end_time=format_date(job["end_time"]),
            prod_user_id=job["username"], prod_user_name=job["username"], attempt_nr=attempt,
            max_attempt=job["max_attempt"] + job["attempt_base"] + job["lost_attempts"],
            job_status=job["job_status"], job_name=f"{job['task_name']}.{job['map_id']}",
            trans_exit_code=job["exit_code"], exe_error_code=job["exit_code"],
            exe_error_diag=diag,
            pilot_error_code=0 if job["panda_id"] else None, computing_site=job["site"],
            cloud=job["cloud"], task_id=tid, jedi_task_id=tid, req_id=job["request_id"],
            core_count=job["core_count"], n_input_files=1, sub_map_id=0, dep_sub_map_id=0,
        )  # fmt: skip
        return row


def _sorted(row: dict[str, Any]) -> dict[str, Any]:
    # The iDDS REST server returns row keys sorted (enum dicts keep theirs).
    return dict(sorted(row.items()))


def _collection(
    prefix: str, coll_id: int, tid: int, status: CollectionStatus, numbers: dict[str, int]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        f"{prefix}_coll_id": coll_id,
        f"{prefix}_coll_transform_id": tid,
        f"{prefix}_coll_scope": "pseudo_dataset",
        f"{prefix}_coll_name": f"pseudo_{prefix}_collection#{tid}",
        f"{prefix}_coll_status": enum_dict(status),
        f"{prefix}_coll_bytes": 0,
        f"{prefix}_total_files": numbers["total"],
    }
    for key in COUNTER_BUCKETS:
        row[f"{prefix}_{key}_files"] = numbers[key]
    return row


_DETAIL_KEYS = (
    *(f"transform_{k}" for k in ("id", "type", "name", "workload_id", "status", "created_at", "updated_at")),
    "transform_finished_at",
    *(f"processing_{k}" for k in ("id", "transform_id", "workload_id", "status", "created_at", "updated_at")),
    "processing_finished_at",
    *(
        f"{p}_{k}"
        for p in ("input", "output")
        for k in ("coll_id", "coll_transform_id", "coll_scope", "coll_name", "coll_status", "coll_bytes")
    ),
    *(f"{p}_{k}_files" for p in ("input", "output") for k in ("total", *COUNTER_BUCKETS)),
)
