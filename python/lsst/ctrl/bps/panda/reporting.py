# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Turn iDDS request rows into `WmsRunReport` objects for ``bps report``.

A run is named by its iDDS request id or by its submit directory.  Labels
and the expected job count of every task come from the submit record written
at prepare (`submit_record.SubmitRecord`); only when no record can be found
are labels derived from the transform names (``<workflow>_<NN>_<label>_<CC>``,
documented fallback).  Every status goes through `status_mapping`, so
``bps status`` and ``bps report`` agree.

Per-task counts are built from the output-collection counters of the
``get_requests(with_detail=True)`` rows (``doc/wire-protocol.md`` §10).  The
counters may be null, stale or inconsistent; they are clamped so that the
counts of a label are never negative and always add up to the label's total
(the expected count from the submit record when known).  Tasks the server has
not released yet (no row) count as UNREADY while the run is active.

Per-job detail (``WmsRunReport.jobs``) and real exit codes need one contents
query per task and are fetched only with ``return_exit_codes``.
"""

from __future__ import annotations

__all__ = [
    "PandaJobReport",
    "build_run_reports",
    "fit_counts",
    "label_from_task_name",
    "run_report",
    "task_counts",
]

import dataclasses
import datetime
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from idds.common.constants import RequestStatus

from lsst.ctrl.bps import WmsJobReport, WmsRunReport, WmsSpecificInfo, WmsStates

from .constants import BUILD_LABEL, LOCAL_SERVICE_NAME
from .exceptions import IDDSRequestError, PandaAuthError, PanDABpsError, PanDAConfigError
from .idds_model import BUCKET_STATUS, DATE_FORMAT
from .run_lookup import RunRef, check_request_name, indexed_record, resolve_run
from .status_mapping import content_state, enum_name, job_state, request_state, transform_state
from .submit_record import SubmitRecord

if TYPE_CHECKING:
    from .idds_transport import IDDSTransport

_LOG = logging.getLogger(__name__)

_S = WmsStates

# Output-collection counter -> the ContentStatus it stands for
# (doc/wire-protocol.md §10), in the order counts are assigned when the
# counters exceed the total.  New outputs are split by `_new_buckets`.
_BUCKETS: tuple[tuple[str, str], ...] = tuple(
    (f"output_{bucket}_files", BUCKET_STATUS[bucket].name)
    for bucket in ("processed", "failed", "missing", "processing", "activated", "preprocessing")
)

_NOT_DONE = frozenset({_S.UNREADY, _S.READY, _S.PENDING, _S.RUNNING, _S.UNKNOWN, _S.MISFIT})

_TASK_NAME = re.compile(r"(?:.*?_)?\d+_(?P<label>.+)_\d+")
_TASK_TAIL = re.compile(r"\d+_(?P<label>.+)_\d+")


@dataclasses.dataclass(slots=True)
class PandaJobReport(WmsJobReport):
    """A `WmsJobReport` with the PanDA attempt number and exit code.

    Parameters
    ----------
    attempts : `int`
        Number of attempts made so far.
    exit_code : `int` or `None`
        Exit code of the last attempt, `None` while it has none.
    task_id : `int` or `None`
        The PanDA (JEDI) task id of the job.
    error_diag : `str` or `None`
        PanDA's diagnostic of the last attempt (payload, else pilot).
    """

    attempts: int = 0
    exit_code: int | None = None
    task_id: int | None = None
    error_diag: str | None = None


@dataclasses.dataclass(slots=True)
class _Task:
    """One iDDS task of a run: its label, expected jobs and server row."""

    name: str
    label: str
    expected: int | None
    row: dict[str, Any] | None


def build_run_reports(
    transport: IDDSTransport,
    wms_workflow_id: str | None,
    user: str | None,
    hist: float,
    return_exit_codes: bool,
) -> tuple[list[WmsRunReport], str]:
    """Build the reports ``bps report`` prints.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    wms_workflow_id : `str` or `None`
        A request id or submit directory; `None` for a summary of runs.
    user : `str` or `None`
        Without an id: only runs of this (iDDS) user name.
    hist : `float`
        Without an id: also include runs that ended within this many days
        (active runs are always included).
    return_exit_codes : `bool`
        Fetch per-job detail and real exit codes (by id only).

    Returns
    -------
    reports : `list` [`lsst.ctrl.bps.WmsRunReport`]
        One report per run.
    message : `str`
        Problems met, empty if none.
    """
    if wms_workflow_id is None:
        return _summaries(transport, user, hist)
    try:
        ref = resolve_run(wms_workflow_id, transport)
        report = run_report(transport, ref, return_exit_codes, name_failed_jobs=True)
    except (IDDSRequestError, PandaAuthError, PanDAConfigError) as exc:
        return [], f"Cannot report run '{wms_workflow_id}': {exc}"
    except PanDABpsError as exc:
        return [], str(exc)
    if report is None:
        return [], f"No run found for id '{wms_workflow_id}' (iDDS request {ref.request_id} is unknown)"
    build_counts = (report.job_summary or {}).get(BUILD_LABEL, {})
    if build_counts.get(_S.FAILED):
        return [report], remote_build_failure(transport, ref.request_id)
    return [report], ""


def remote_build_failure(transport: IDDSTransport, request_id: int, lines: int = 20) -> str:
    """Describe a failed remote build: diagnostics and the log's last lines.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    request_id : `int`
        The build request.
    lines : `int`, optional
        How many last lines of the build job's log to show (when the log is
        readable from here, as on the local service).

    Returns
    -------
    message : `str`
        ``Remote build failed ...`` with the log's last lines, or empty.
    """
    rows = [row for row in _task_rows(transport.get_requests(request_id, with_detail=True))
            if _row_task_name(row) == BUILD_LABEL]  # fmt: skip
    if not rows:
        return ""
    groups = transport.get_contents_output_ext(request_id, _opt_int(rows[0].get("transform_workload_id")))
    parts = []
    for content in _task_contents(groups, rows[0].get("transform_id")):
        diag = str(content.get("exe_error_diag") or content.get("pilot_error_diag") or "")
        if content.get("job_status") != "failed" and not diag:
            continue
        parts.append(f"Remote build failed (PanDA job {content.get('panda_id')}): {diag}")
        match = re.search(r"see (\S+)", diag)
        if match and os.path.isfile(match.group(1)):
            with open(match.group(1), errors="replace") as stream:
                tail = stream.read().splitlines()[-lines:]
            parts.append(f"Last lines of {match.group(1)}:\n" + "\n".join(tail))
    return "\n".join(parts)


def run_report(
    transport: IDDSTransport, ref: RunRef, return_exit_codes: bool, name_failed_jobs: bool = False
) -> WmsRunReport | None:
    """Build the report of one run.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    ref : `RunRef`
        The run.
    return_exit_codes : `bool`
        Fetch per-job detail and real exit codes.
    name_failed_jobs : `bool`, optional
        Name each failed job in ``specific_info``: bps job name, label,
        PanDA job id, exit code, diagnostic and, with ``$PANDAMON_URL``,
        its PanDA monitor page (fetches the jobs of tasks with failures).

    Returns
    -------
    report : `lsst.ctrl.bps.WmsRunReport` or `None`
        The report, `None` if the server does not know the request.

    Raises
    ------
    IDDSRequestError
        If the relay or iDDS fails.
    """
    rows = transport.get_requests(ref.request_id, with_detail=True)
    if not rows:
        return None
    head = rows[0]
    check_request_name(ref.record if not ref.given.isdigit() else None, ref.given, head)
    state = request_state(head.get("status"))
    tasks = _plan_tasks(ref.record, _task_rows(rows), head.get("name"))
    summary = _label_summary(tasks, state)
    report = _base_report(ref, head, state)
    report.job_summary = summary
    report.run_summary = ";".join(f"{label}:{sum(counts.values())}" for label, counts in summary.items())
    report.job_state_counts = _sum_counts(summary.values())
    report.total_number_jobs = sum(report.job_state_counts.values())
    report.exit_code_summary = {label: [] for label, c in summary.items() if not c[_S.FAILED]}
    failed: list[WmsJobReport] = []
    if return_exit_codes:
        jobs = _job_reports(transport, ref.request_id, tasks)
        report.jobs = jobs
        report.exit_code_summary = _exit_codes(summary, jobs)
        failed = [job for job in jobs if job.state is _S.FAILED]
    elif name_failed_jobs and report.job_state_counts[_S.FAILED]:
        failing = [
            task for task in tasks if task.row is not None and _num(task.row.get("output_failed_files"))
        ]
        failed = [job for job in _job_reports(transport, ref.request_id, failing) if job.state is _S.FAILED]
    report.specific_info = _specific_info(ref.request_id, head, tasks)
    if name_failed_jobs:
        _add_failed_jobs(report.specific_info, failed, head)
    return report


def _add_failed_jobs(info: WmsSpecificInfo, failed: Iterable[WmsJobReport], head: Mapping[str, Any]) -> None:
    """Add one message per failed job: name, label, PanDA id, monitor page.

    Each line is its own context field (``failed_job_<n>``): the context of
    a `WmsSpecificInfo` is shared by all its messages.
    """
    monitor = os.environ.get("PANDAMON_URL")
    local = head.get("locking_thread_name") == LOCAL_SERVICE_NAME
    for number, job in enumerate(failed, start=1):
        exit_code = job.exit_code if isinstance(job, PandaJobReport) else None
        diag = job.error_diag if isinstance(job, PandaJobReport) else None
        line = f"Failed job {job.name} ({job.label}): PanDA job id {job.wms_id}, exit code {exit_code}"
        if diag:
            line += f"; {diag.removeprefix(f'exit code {exit_code}; ')}"
        if monitor and not local:
            line += f"; monitor {monitor.rstrip('/')}/job?pandaid={job.wms_id}"
        key = f"failed_job_{number}"
        info.add_message(f"{{{key}}}", **{key: line})


def _base_report(ref: RunRef, head: Mapping[str, Any], state: WmsStates) -> WmsRunReport:
    """Fill the run-level fields of a report."""
    extra = ref.record.extra if ref.record is not None else {}
    return WmsRunReport(
        wms_id=str(ref.request_id),
        global_wms_id=str(ref.request_id),
        path=ref.record.submit_path if ref.record is not None else None,
        run=ref.record.run_name if ref.record is not None else head.get("name"),
        operator=extra.get("operator") or head.get("username") or "",
        project=extra.get("project") or "",
        campaign=extra.get("campaign") or head.get("campaign") or "",
        payload=extra.get("payload") or "",
        site=extra.get("site") or head.get("site") or "",
        state=state,
    )


def _task_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per transform, in transform id order.

    Rows without a transform (a young request) are skipped; of several
    rows of one transform (one per processing or collection) the last wins.
    """
    by_id: dict[int, dict[str, Any]] = {}
    for row in rows:
        transform_id = row.get("transform_id")
        if isinstance(transform_id, int) and not isinstance(transform_id, bool):
            by_id[transform_id] = dict(row)
    return [by_id[key] for key in sorted(by_id)]


def _plan_tasks(record: SubmitRecord | None, rows: list[dict[str, Any]], run_name: str | None) -> list[_Task]:
    """Match server rows with the tasks of the submit record."""
    by_name = {_row_task_name(row): row for row in rows}
    tasks: list[_Task] = []
    if record is not None:
        for name, task in record.tasks.items():
            tasks.append(_Task(name, task.label, task.jobs, by_name.pop(name, None)))
    for name, row in by_name.items():
        tasks.append(_Task(name, label_from_task_name(name, run_name), None, row))
    return tasks


def _row_task_name(row: Mapping[str, Any]) -> str:
    """Return the iDDS work name of a row (without a JEDI id suffix)."""
    name = str(row.get("transform_name") or f"transform_{row.get('transform_id')}")
    suffix = f"_{row.get('request_id')}_{row.get('transform_id')}"
    return name.removesuffix(suffix) if name.endswith(suffix) and len(name) > len(suffix) else name


def label_from_task_name(task_name: str, run_name: str | None = None) -> str:
    """Derive a label from an iDDS task name (fallback without a record).

    Parameters
    ----------
    task_name : `str`
        ``<workflow>_<NN>_<label>_<CC>`` as built by the plugin.
    run_name : `str`, optional
        The workflow (request) name, stripped first when it prefixes the
        task name, so labels containing ``_<digits>`` survive.

    Returns
    -------
    label : `str`
        The label, or the whole task name if it does not follow the pattern.
    """
    match = None
    if run_name and task_name.startswith(f"{run_name}_"):
        match = _TASK_TAIL.fullmatch(task_name[len(run_name) + 1 :])
    match = match or _TASK_NAME.fullmatch(task_name)
    return match.group("label") if match else task_name


def _num(value: object) -> int:
    """Return a counter as a non-negative int (0 for null or garbage)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def fit_counts(
    buckets: Sequence[tuple[WmsStates, int]], total: int, remainder: WmsStates
) -> dict[WmsStates, int]:
    """Distribute a task's jobs over states.

    Parameters
    ----------
    buckets : `~collections.abc.Sequence` [`tuple`]
        ``(state, count)`` pairs in priority order; counts beyond the total
        are dropped.  Active states become ``remainder`` when that is
        ``DELETED`` or ``HELD`` (a cancelled or suspended task).
    total : `int`
        Number of jobs of the task.
    remainder : `lsst.ctrl.bps.WmsStates`
        State of the jobs no bucket accounts for.

    Returns
    -------
    counts : `dict` [`lsst.ctrl.bps.WmsStates`, `int`]
        A count for every state; non-negative, adding up to ``total``.
    """
    counts = dict.fromkeys(WmsStates, 0)
    left = max(0, total)
    for state, number in buckets:
        take = min(max(0, number), left)
        if state in _NOT_DONE and remainder in (_S.DELETED, _S.HELD):
            state = remainder
        counts[state] += take
        left -= take
    counts[remainder] += left
    return counts


def task_counts(row: Mapping[str, Any] | None, expected: int | None, run_state: WmsStates) -> dict:
    """Return the job counts per state of one task.

    Parameters
    ----------
    row : `~collections.abc.Mapping` or `None`
        The task's ``get_requests(with_detail=True)`` row; `None` if the
        server has not released the task yet.
    expected : `int` or `None`
        Jobs in the task according to the submit record.
    run_state : `lsst.ctrl.bps.WmsStates`
        State of the whole run.

    Returns
    -------
    counts : `dict` [`lsst.ctrl.bps.WmsStates`, `int`]
        A count for every state; non-negative, adding up to ``expected``
        (or, without it, to the larger of the server's total and the sum of
        its counters).
    """
    if row is None:
        return fit_counts((), expected or 0, _unreleased_state(run_state))
    buckets = [(content_state(status), _num(row.get(key))) for key, status in _BUCKETS]
    buckets.extend(_new_buckets(row))
    if expected is None:
        total = max(_num(row.get("output_total_files")), sum(n for _, n in buckets))
    else:
        total = max(0, expected)
    return fit_counts(
        buckets, total, _remainder_state(transform_state(row.get("transform_status")), run_state)
    )


def _new_buckets(row: Mapping[str, Any]) -> list[tuple[WmsStates, int]]:
    """Split the jobs whose output is still New.

    A New output whose pseudo input is no longer New belongs to a job whose
    parents are done: released, waiting for PanDA (READY).  The others wait
    for their parents (UNREADY); so do all of them while ``input_new_files``
    is null (not synchronised yet).
    """
    new = _num(row.get("output_new_files"))
    input_new = row.get("input_new_files")
    released = 0 if input_new is None else min(new, max(0, new - _num(input_new)))
    return [(_S.READY, released), (content_state("New"), new - released)]


def _unreleased_state(run_state: WmsStates) -> WmsStates:
    """State of the jobs of a task the server has not released."""
    if run_state in (_S.DELETED, _S.HELD):
        return run_state
    return _S.PRUNED if run_state is _S.FAILED else _S.UNREADY


def _remainder_state(task_state: WmsStates, run_state: WmsStates) -> WmsStates:
    """State of a task's jobs that no counter accounts for."""
    for state in (_S.DELETED, _S.HELD):
        if state in (task_state, run_state):
            return state
    if task_state is _S.SUCCEEDED:
        return _S.SUCCEEDED
    return _S.PRUNED if task_state is _S.FAILED else _S.UNREADY


def _label_summary(tasks: Iterable[_Task], run_state: WmsStates) -> dict[str, dict[WmsStates, int]]:
    """Aggregate the task (chunk) counts per label, in task order."""
    summary: dict[str, dict[WmsStates, int]] = {}
    for task in tasks:
        counts = task_counts(task.row, task.expected, run_state)
        summary[task.label] = _sum_counts([summary.get(task.label, {}), counts])
    return summary


def _sum_counts(parts: Iterable[Mapping[WmsStates, int]]) -> dict[WmsStates, int]:
    """Add up state counts, with an entry for every state."""
    total = dict.fromkeys(WmsStates, 0)
    for part in parts:
        for state, number in part.items():
            total[state] += number
    return total


def _job_reports(transport: IDDSTransport, request_id: int, tasks: Iterable[_Task]) -> list[WmsJobReport]:
    """Fetch the per-job rows of every released task."""
    jobs: list[WmsJobReport] = []
    replies: dict[int | None, dict[str, list[dict]]] = {}
    for task in tasks:
        if task.row is None:
            continue
        workload_id = _opt_int(task.row.get("transform_workload_id"))
        if workload_id not in replies:  # without a JEDI id: one query for all
            replies[workload_id] = transport.get_contents_output_ext(request_id, workload_id)
        for content in _task_contents(replies[workload_id], task.row.get("transform_id")):
            jobs.append(_job_report(content, task.label, workload_id))
    return jobs


def _task_contents(groups: Mapping[str, list[dict]], transform_id: object) -> list[dict]:
    """Pick a task's rows out of a contents reply grouped by transform.

    A reply of one group is the task's even if keyed otherwise (by JEDI
    task id, ``group_by_jedi_task_id``).
    """
    if not isinstance(groups, Mapping):
        return []
    mine = groups.get(str(transform_id))
    if mine is None and len(groups) == 1:
        mine = next(iter(groups.values()))
    return list(mine or [])


def _job_report(content: Mapping[str, Any], label: str, task_id: object) -> PandaJobReport:
    """Turn one contents row into a job report."""
    status = content.get("status") or content.get("substatus")
    state = content_state(status) if status is not None else job_state(content.get("job_status"))
    name = str(content.get("name") or content.get("job_name") or "")
    panda_id = content.get("panda_id")
    return PandaJobReport(
        wms_id=str(panda_id if panda_id is not None else content.get("content_id", "")),
        name=name.removeprefix("PH:").split("+", 1)[0],
        label=label,
        state=state,
        attempts=_num(content.get("attempt_nr")),
        exit_code=_exit_code(content) if state is _S.FAILED else _opt_int(content.get("trans_exit_code")),
        task_id=_opt_int(task_id),
        error_diag=content.get("exe_error_diag") or content.get("pilot_error_diag") or None,
    )


def _opt_int(value: object) -> int | None:
    """Return an int, or `None` for null or non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _exit_code(content: Mapping[str, Any]) -> int:
    """Exit code of a failed job: payload, else executor, else pilot code.

    ``-1`` when no non-zero code is recorded (killed, lost, ...).
    """
    for key in ("trans_exit_code", "exe_error_code", "pilot_error_code"):
        code = _opt_int(content.get(key))
        if code:
            return code
    return -1


def _exit_codes(summary: Mapping[str, Mapping[WmsStates, int]], jobs: Iterable[WmsJobReport]) -> dict:
    """Exit codes of the failed jobs, for every label (ints)."""
    codes: dict[str, list[int]] = {label: [] for label in summary}
    for job in jobs:
        if job.state is _S.FAILED and isinstance(job, PandaJobReport):
            code = job.exit_code if job.exit_code is not None else -1
            codes.setdefault(job.label, []).append(code)
    return codes


def _specific_info(request_id: int, head: Mapping[str, Any], tasks: Iterable[_Task]) -> WmsSpecificInfo:
    """PanDA task ids per task, and where job logs are."""
    info = WmsSpecificInfo()
    task_ids = {t.name: t.row.get("transform_workload_id") for t in tasks if t.row is not None}
    known = ", ".join(f"{name}={tid}" for name, tid in task_ids.items() if tid is not None)
    info.add_message("PanDA task ids: {panda_task_ids}", panda_task_ids=known or "none yet")
    if head.get("locking_thread_name") == LOCAL_SERVICE_NAME and head.get("additional_data_storage"):
        logs = os.path.join(str(head["additional_data_storage"]), "jobs", str(request_id))
        info.add_message("Job logs (local PanDA service): {job_logs}", job_logs=logs)
    else:
        monitor = os.environ.get("PANDAMON_URL")
        if monitor:
            url = f"{monitor.rstrip('/')}/tasks/?reqid={request_id}"
            info.add_message("Job logs: PanDA monitor {panda_monitor}", panda_monitor=url)
    return info


def _summaries(transport: IDDSTransport, user: str | None, hist: float) -> tuple[list[WmsRunReport], str]:
    """One report per run of ``user`` active or ended within ``hist`` days."""
    try:
        rows = transport.get_requests()
    except PanDABpsError as exc:
        return [], f"Cannot list runs: {exc}"
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=max(0.0, hist or 0.0))
    reports: list[WmsRunReport] = []
    messages: list[str] = []
    for row in rows:
        request_id = _opt_int(row.get("request_id"))
        if request_id is None or not _recent(row, cutoff):
            continue
        record = indexed_record(request_id)
        if not _owned(row, record, user):
            continue
        try:
            ref = RunRef(str(request_id), request_id, record)
            report = run_report(transport, ref, False)
        except PanDABpsError as exc:
            messages.append(f"Run {request_id}: {exc}")
            continue
        if report is not None:
            reports.append(report)
    return reports, "\n".join(messages)


def _owned(row: Mapping[str, Any], record: SubmitRecord | None, user: str | None) -> bool:
    """Whether a request belongs to ``user`` (any user when `None`).

    ``user`` matches the OPERATOR column ``bps report`` shows (the submit
    record's ``operator``) or the request's iDDS user name (the token's).
    """
    if not user:
        return True
    operator = record.extra.get("operator") if record is not None else None
    names = {str(row.get("username") or "").casefold(), str(operator or "").casefold()}
    return user.casefold() in names - {""}


def _recent(row: Mapping[str, Any], cutoff: datetime.datetime) -> bool:
    """Whether a request is active or was updated after ``cutoff``."""
    if request_state(row.get("status")) not in (_S.SUCCEEDED, _S.FAILED, _S.DELETED):
        return True
    stamp = row.get("updated_at") or row.get("created_at")
    try:
        when = datetime.datetime.strptime(str(stamp), DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        _LOG.debug("Unreadable date %r of request %s", stamp, row.get("request_id"))
        return True
    return when >= cutoff


def request_status_name(row: Mapping[str, Any]) -> str | None:
    """Return the request status name of a ``get_requests`` row.

    Parameters
    ----------
    row : `~collections.abc.Mapping`
        A request row.

    Returns
    -------
    name : `str` or `None`
        E.g. ``Transforming``; `None` if absent.
    """
    return enum_name(row.get("status"), RequestStatus)
