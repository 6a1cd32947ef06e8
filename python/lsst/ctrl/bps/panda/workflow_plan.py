# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Plan the PanDA tasks of a `~lsst.ctrl.bps.GenericWorkflow`.

The second step of prepare (``flatten`` -> **plan** -> encode -> submit,
see ``doc/design.md``): the jobs described by `describe_jobs` are cut into
PanDA tasks, one per label and task key, in evenly sized chunks of at most
``maxJobsPerTask`` jobs; every job gets its order id and its name in its
task's dependency map; every task its PanDA fields and its pilot command.
The final job(s) get their own task(s). The result is a `WorkflowPlan` of
plain values: no iDDS object, no JSON, nothing written.
"""

from __future__ import annotations

__all__ = ["ORDER_ID_MAP_KEY", "QNODE_MAP_FILENAME", "QNODE_MAP_KEY", "WorkPlan", "WorkflowPlan",
           "even_slices", "plan_workflow"]  # fmt: skip

import dataclasses
import logging
import math
import operator
from collections.abc import Callable, Collection, Iterable
from typing import Any

import networkx

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowJob

from .command_line import (
    ORDER_ID_MAP_TOKEN,
    CommandLineError,
    compose_runner_command,
    encode_hex,
    files_field,
)
from .constants import FINAL_PSEUDO_INPUT
from .event_service import WorkEventService
from .exceptions import WorkflowTranslationError
from .job_description import JobGroup, describe_jobs
from .service_settings import ServiceSettings, TaskSettings
from .submit_record import TaskRecord
from .workflow_graph import FlatWorkflow, flatten

_LOG = logging.getLogger(__name__)

ORDER_ID_MAP_KEY = "orderIdMapFilename"
"""Files key of the order-id (job-name) map."""

QNODE_MAP_KEY = "qnodemap"
"""Files key of the qnode map."""

QNODE_MAP_FILENAME = "qnode_map.json"
"""Name the site decoder reads the qnode map from."""

Parents = Callable[[str], Collection[str]]
"""Job name to the names of its payload parents."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkPlan:
    """One PanDA task: a chunk of the jobs of one group.

    Parameters
    ----------
    task_name : `str`
        ``<run>_<number>_<label>_<chunk>``.
    number : `int`
        Its position among all tasks, from 1.
    label : `str`
        Label of its jobs.
    order_id : `int`
        Order id of its first job (the others count up).
    job_names : `list` [`str`]
        Its jobs' names.
    map_names : `list` [`str`]
        Each job's name in the dependency map: its pseudo input name, or
        its order-id / qnode map placeholder.
    parents : `~collections.abc.Callable`
        Job name to its payload parents.
    task : `TaskSettings`
        Its PanDA fields.
    event_service : `WorkEventService`
        Its event-service fields.
    executable : `str`
        Its pilot command (``runnerCommand`` with the decoder arguments).
    """

    task_name: str
    number: int
    label: str
    order_id: int
    job_names: list[str]
    map_names: list[str]
    parents: Parents
    task: TaskSettings
    event_service: WorkEventService
    executable: str


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowPlan:
    """Every PanDA task of a run and what goes with them.

    Parameters
    ----------
    name : `str`
        The workflow's (iDDS request's) name.
    works : `list` [`WorkPlan`]
        The payload tasks, in dependency order of their labels.
    final_works : `list` [`WorkPlan`]
        The final job's task(s), to start once every other task ended.
    files_to_stage : `dict` [`str`, `str`]
        Target relative to the distribution endpoint (directories end in
        ``/``) to local source, for every file a job reads.
    tasks : `dict` [`str`, `TaskRecord`]
        Task name to label and job count, in task order.
    order_id_map : `dict` or `None`
        ``{label: {"<order id>": pseudo name}}`` when the job-name map is on.
    qnode_map : `dict` or `None`
        ``{"PH:<job>": pseudo name}`` when the qnode map is on.
    max_name_length : `int`
        Longest dependency-map name iDDS accepts.
    """

    name: str
    works: list[WorkPlan]
    final_works: list[WorkPlan]
    files_to_stage: dict[str, str]
    tasks: dict[str, TaskRecord]
    order_id_map: dict[str, dict[str, str]] | None
    qnode_map: dict[str, str] | None
    max_name_length: int

    @property
    def job_name_map(self) -> bool:
        """Whether the job-name (order-id) map is on (`bool`)."""
        return self.order_id_map is not None


@dataclasses.dataclass(frozen=True, slots=True)
class _Numbering:
    """Where task numbers and per-label order ids stand."""

    tasks: int = 0
    labels: tuple[tuple[str, int, int], ...] = ()  # label, next order id, chunks so far

    def of(self, label: str) -> tuple[int, int]:
        """Return the next order id and the chunk count of a label."""
        return next(((o, c) for name, o, c in self.labels if name == label), (0, 0))

    def updated(self, label: str, tasks: int, order_id: int, chunks: int) -> _Numbering:
        """Return the numbering after a label's tasks were cut."""
        others = tuple(entry for entry in self.labels if entry[0] != label)
        return _Numbering(tasks, (*others, (label, order_id, chunks)))


def plan_workflow(
    settings: ServiceSettings,
    generic_workflow: GenericWorkflow,
    flat: FlatWorkflow | None = None,
    archive_url: str | None = None,
) -> WorkflowPlan:
    """Plan the PanDA tasks of a workflow.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings (labels of the workflow read).
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.
    flat : `FlatWorkflow`, optional
        The workflow already flattened (`flatten`).
    archive_url : `str`, optional
        PanDA cache URL of an archive holding the jobs' files (custom
        jobs): the decoder's direct-I/O field of every task.

    Returns
    -------
    plan : `WorkflowPlan`
        The tasks.

    Raises
    ------
    WorkflowTranslationError
        Raised naming the job if a job cannot be expressed in the site
        decoder's format or exceeds the iDDS name length.
    """
    if settings.enable_qnode_map and settings.enable_job_name_map:
        _LOG.warning("enableJobNameMap and enableQnodeMap are both set; using the job-name map only")
    maps = _NameMaps.of(settings)
    flat = flat if flat is not None else flatten(generic_workflow)
    groups, stage = describe_jobs(settings, flat, archive_url=archive_url)
    order = _label_order(generic_workflow, groups)
    run = _Run(settings, generic_workflow.name, maps)
    works, numbering = _cut(run, [groups[label] for label in order], flat.parents_function(), _Numbering())
    final_works: list[WorkPlan] = []
    final_flat, base = _final_jobs(generic_workflow)
    if final_flat is not None and len(final_flat):
        final_groups, final_stage = describe_jobs(settings, final_flat, base=base, archive_url=archive_url,
                                                  staged=stage)  # fmt: skip
        stage.update(final_stage)
        final_order = [final_groups[label] for label in _label_order(generic_workflow, final_groups)]
        final_works, _ = _cut(run, final_order, final_flat.parents_function(), numbering)
    tasks = {w.task_name: TaskRecord(w.label, len(w.job_names)) for w in works + final_works}
    _LOG.info("Planned %d job(s) in %d PanDA task(s)", sum(t.jobs for t in tasks.values()), len(tasks))
    return WorkflowPlan(generic_workflow.name, works, final_works, stage, tasks, maps.order_id,
                        maps.qnode, settings.max_name_length)  # fmt: skip


def _final_jobs(generic_workflow: GenericWorkflow) -> tuple[FlatWorkflow | None, str | None]:
    """Return the final job(s) as a flat workflow, and their pseudo-name base.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.

    Returns
    -------
    flat : `FlatWorkflow` or `None`
        The final job, or the jobs of a final workflow; `None` without.
    base : `str` or `None`
        The fixed pseudo-name base of a single final job, else `None`.
    """
    final = generic_workflow.get_final()
    if final is None:
        return None, None
    if isinstance(final, GenericWorkflow):
        return flatten(final), None
    flat = FlatWorkflow(generic_workflow)
    flat.jobs[final.name] = final
    flat.virtual.add("\x00final")  # not simple: the final job is no graph node
    flat.preds[final.name] = []
    return flat, FINAL_PSEUDO_INPUT


def _label_order(generic_workflow: GenericWorkflow, labels: Iterable[str]) -> list[str]:
    """Return the labels in dependency order where known.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow (its label graph).
    labels : `~collections.abc.Iterable` [`str`]
        Labels in first-seen order.

    Returns
    -------
    ordered : `list` [`str`]
        The same labels, those of the label graph first in its
        topological order.
    """
    seen = list(labels)
    try:
        ordered = [label for label in generic_workflow.labels if label in seen]
    except networkx.NetworkXException:  # cyclic label graph (job ordering): first-seen order
        ordered = []
    return ordered + [label for label in seen if label not in ordered]


def even_slices(count: int, limit: int) -> list[tuple[int, int]]:
    """Split ``count`` items into the fewest slices of at most ``limit``,
    sizes differing by at most one.

    Parameters
    ----------
    count : `int`
        Number of items.
    limit : `int`
        Largest slice.

    Returns
    -------
    slices : `list` [`tuple` [`int`, `int`]]
        Start and end of each slice.
    """
    chunks = math.ceil(count / limit)
    size, larger = divmod(count, chunks) if chunks else (0, 0)
    slices, start = [], 0
    for index in range(chunks):
        end = start + size + (index < larger)
        slices.append((start, end))
        start = end
    return slices


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    """What every task of a run shares while it is cut."""

    settings: ServiceSettings
    name: str  # the workflow's, start of every task name
    maps: _NameMaps  # the job-name / qnode maps, filled as jobs are named


def _cut(
    run: _Run, labels: list[dict[Any, JobGroup]], parents: Parents, numbering: _Numbering
) -> tuple[list[WorkPlan], _Numbering]:
    """Cut every group into even chunks, one task each.

    Parameters
    ----------
    run : `_Run`
        Settings, workflow name and name maps.
    labels : `list` [`dict`]
        Each label's groups by task key, in label order.
    parents : `~collections.abc.Callable`
        Job name to its payload parents.
    numbering : `_Numbering`
        Task numbers and order ids used so far.

    Returns
    -------
    works : `list` [`WorkPlan`]
        The tasks, in order.
    numbering : `_Numbering`
        The numbering after them.
    """
    works = []
    settings, maps, number = run.settings, run.maps, numbering.tasks
    for groups in labels:
        label = next(iter(groups.values())).label
        # Order ids and chunk numbers continue if the final workflow
        # reuses a label: map names stay unique per label.
        order_id, chunk = numbering.of(label)
        for group in groups.values():
            executable = _runner_command(settings, group, maps)
            for start, end in even_slices(len(group.names), settings.max_jobs_per_task):
                number, chunk = number + 1, chunk + 1
                task_name = f"{run.name}_{number:02d}_{label}_{chunk:02d}"
                names, jobs = group.names[start:end], group.jobs[start:end]
                map_names = maps.add(label, names, _pseudo_names(group, names, jobs), order_id)
                _check_lengths(settings.max_name_length, names, map_names)
                task = _task_settings(settings, label, jobs)
                event_service = _event_service(settings, label, task)
                works.append(WorkPlan(task_name, number, label, order_id, names, map_names, parents, task,
                                      event_service, executable))  # fmt: skip
                order_id += len(names)
        numbering = numbering.updated(label, number, order_id, chunk)
    return works, numbering


def _event_service(settings: ServiceSettings, label: str, task: TaskSettings) -> WorkEventService:
    """Return a task's event-service fields (off unless its label is on)."""
    if task.event_service is not None:
        return task.event_service
    return WorkEventService(False, label, settings.event_service.max_payloads, task.walltime)


def _pseudo_names(group: JobGroup, names: list[str], jobs: list[GenericWorkflowJob]) -> list[str]:
    """Return the pseudo input names of some jobs of a group.

    Made per chunk: a realistic name (``{quantum uuid}_{label}_{data id}``
    and its ``+qgraphNodeId:<uuid>``) is over 100 characters.

    Parameters
    ----------
    group : `JobGroup`
        Their group.
    names : `list` [`str`]
        Job names.
    jobs : `list` [`lsst.ctrl.bps.GenericWorkflowJob`]
        The jobs.

    Returns
    -------
    pseudos : `list` [`str`]
        Their pseudo input names.

    Raises
    ------
    WorkflowTranslationError
        Raised naming the job if a lazy value is missing or cannot be
        carried.
    """
    pseudo_name = group.command.pseudo_name
    try:
        if group.base is None:
            return [pseudo_name(name, name, job.cmdvals) for name, job in zip(names, jobs, strict=True)]
        base = group.base
        return [pseudo_name(name, base, job.cmdvals) for name, job in zip(names, jobs, strict=True)]
    except CommandLineError as exc:
        raise WorkflowTranslationError(str(exc)) from exc


def _check_lengths(limit: int, names: list[str], map_names: list[str]) -> None:
    """Check the map names of a chunk against the iDDS name length.

    Parameters
    ----------
    limit : `int`
        Longest name iDDS accepts.
    names : `list` [`str`]
        Job names (for the error).
    map_names : `list` [`str`]
        Their map names.

    Raises
    ------
    WorkflowTranslationError
        Raised naming the first job whose map name is too long.
    """
    if map_names and max(map(len, map_names)) > limit:
        name, map_name = next((n, m) for n, m in zip(names, map_names, strict=True) if len(m) > limit)
        raise WorkflowTranslationError(
            f"Job {name!r}: pseudo input name of {len(map_name)} characters exceeds the iDDS "
            f"limit of {limit} (IDDS_MAX_NAME_LENGTH); set enableJobNameMap or enableQnodeMap"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _NameMaps:
    """The job-name (order-id) map or the qnode map being filled, if on."""

    order_id: dict[str, dict[str, str]] | None
    qnode: dict[str, str] | None

    @classmethod
    def of(cls, settings: ServiceSettings) -> _NameMaps:
        """Return the empty maps the settings turn on (job-name map first)."""
        if settings.enable_job_name_map:
            return cls({}, None)
        return cls(None, {} if settings.enable_qnode_map else None)

    def add(self, label: str, names: list[str], pseudos: list[str], order_id: int) -> list[str]:
        """Record a chunk's jobs; return their names in the dependency map.

        Parameters
        ----------
        label : `str`
            Their label.
        names : `list` [`str`]
            Job names.
        pseudos : `list` [`str`]
            Their pseudo input names.
        order_id : `int`
            Order id of the first.

        Returns
        -------
        map_names : `list` [`str`]
            The pseudo names, or the map placeholders standing for them.
        """
        if self.order_id is not None:
            orders = range(order_id, order_id + len(names))
            self.order_id.setdefault(label, {}).update(zip(map(str, orders), pseudos, strict=True))
            return [f"{label}:orderIdMap_{index}" for index in orders]
        if self.qnode is not None:
            placeholders = [f"PH:{name}" for name in names]
            self.qnode.update(zip(placeholders, pseudos, strict=True))
            return placeholders
        return pseudos


def _runner_command(settings: ServiceSettings, group: JobGroup, maps: _NameMaps) -> str:
    """Return the pilot command of a group's tasks.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings.
    group : `JobGroup`
        The group.
    maps : `_NameMaps`
        Which name map is on.

    Returns
    -------
    command : `str`
        ``runnerCommand`` with the five decoder arguments.

    Raises
    ------
    WorkflowTranslationError
        Raised if the command names a ``<FILE:key>`` that is not staged.
    """
    dist = settings.file_distribution_endpoint
    files = dict(group.files.files)
    runner = settings.runner_command
    if maps.order_id is not None:
        files[ORDER_ID_MAP_KEY] = settings.order_id_map_filename
        runner = runner.replace(ORDER_ID_MAP_TOKEN, dist + settings.order_id_map_filename)
    elif maps.qnode is not None:
        files[QNODE_MAP_KEY] = QNODE_MAP_FILENAME
    missing = [key for key in group.command.worker_files if key not in files]
    if missing:
        raise WorkflowTranslationError(f"Label {group.label!r}: <FILE:{missing[0]}> is not staged")
    encoded = encode_hex(group.command.text)
    return compose_runner_command(runner, encoded, dist, files_field(files), group.files.direct_io)


_BPS_KEYS = {
    "request_memory": "requestMemory",
    "request_memory_max": "requestMemoryMax",
    "request_cpus": "requestCpus",
    "request_walltime": "requestWalltime",
}


def _task_settings(settings: ServiceSettings, label: str, jobs: list[GenericWorkflowJob]) -> TaskSettings:
    """Map the attributes of a chunk's jobs to PanDA task fields.

    Categorical attributes are equal within a group (task key);
    resources are the maximum over the chunk.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings (fallbacks).
    label : `str`
        The jobs' label.
    jobs : `list` [`lsst.ctrl.bps.GenericWorkflowJob`]
        The chunk's jobs.

    Returns
    -------
    task : `TaskSettings`
        The task's fields.
    """
    first = jobs[0]
    rss = _chunk_max(jobs, "request_memory", settings.request_memory)
    rss_max = _chunk_max(jobs, "request_memory_max", settings.request_memory_max)
    seconds = _chunk_max(jobs, "request_walltime", 0)  # requestWalltime goes to PanDA in seconds
    walltime = seconds or settings.max_walltime_seconds
    multiplier = first.memory_multiplier
    step = math.ceil(rss * float(multiplier)) if multiplier else 0
    return TaskSettings(
        site=first.compute_site or settings.compute_site,
        cloud=first.compute_cloud or settings.compute_cloud,
        queue=first.queue or None,
        priority=_number(first, "priority", first.priority, settings.priority),
        rss=rss,
        rss_retry_step=step,
        rss_retry_offset=0 if step else rss,
        rss_max=max(rss_max, rss),
        cores=_chunk_max(jobs, "request_cpus", settings.request_cpus),
        walltime=walltime,
        attempts=_number(first, "numberOfRetries", first.number_of_retries, settings.number_of_retries),
        working_group=first.accounting_group or None,
        label=settings.label(label),
        event_service=settings.event_service.for_work(label, seconds, walltime),
        retry_unless_exit=_exit_codes(first),
    )


def _chunk_max(jobs: list[GenericWorkflowJob], attr: str, fallback: int) -> int:
    """Return the largest value of a numeric job attribute in a chunk.

    Parameters
    ----------
    jobs : `list` [`lsst.ctrl.bps.GenericWorkflowJob`]
        The chunk's jobs.
    attr : `str`
        Attribute name.
    fallback : `int`
        Value of jobs with the attribute unset.

    Returns
    -------
    value : `int`
        The maximum, rounded up.

    Raises
    ------
    WorkflowTranslationError
        Raised naming a job whose value is not a number.
    """
    getter = operator.attrgetter(attr)
    try:
        distinct: Iterable[Any] = set(map(getter, jobs))
    except TypeError:  # unhashable values
        distinct = list(map(getter, jobs))
    numbers = []
    for value in distinct:
        try:
            numbers.append(_as_number(value, fallback))
        except (TypeError, ValueError) as exc:
            job = next(j for j in jobs if getter(j) == value)
            raise WorkflowTranslationError(
                f"Job {job.name!r}: {_BPS_KEYS[attr]} {value!r} is not a number"
            ) from exc
    return max(numbers)


def _as_number(value: Any, fallback: int) -> int:
    """Return a value as an int rounded up, or the fallback if unset.

    Parameters
    ----------
    value : `~typing.Any`
        The value.
    fallback : `int`
        Used when the value is unset.

    Returns
    -------
    number : `int`
        The number.

    Raises
    ------
    TypeError, ValueError
        Raised if the value is not a number.
    """
    if value is None or value == "":
        return fallback
    return math.ceil(float(value))


def _number(job: GenericWorkflowJob, attr: str, value: Any, fallback: int) -> int:
    """Return a job attribute as an int, or the fallback if unset.

    Parameters
    ----------
    job : `lsst.ctrl.bps.GenericWorkflowJob`
        The job (for the error).
    attr : `str`
        BPS key (for the error).
    value : `~typing.Any`
        The value.
    fallback : `int`
        Used when the value is unset.

    Returns
    -------
    number : `int`
        The value rounded up.

    Raises
    ------
    WorkflowTranslationError
        Raised if the value is not a number.
    """
    try:
        return _as_number(value, fallback)
    except (TypeError, ValueError) as exc:
        raise WorkflowTranslationError(f"Job {job.name!r}: {attr} {value!r} is not a number") from exc


def _exit_codes(job: GenericWorkflowJob) -> tuple[int, ...]:
    """Return a job's ``retryUnlessExit`` as sorted exit codes.

    Parameters
    ----------
    job : `lsst.ctrl.bps.GenericWorkflowJob`
        The job.

    Returns
    -------
    codes : `tuple` [`int`, ...]
        Empty when unset.

    Raises
    ------
    WorkflowTranslationError
        Raised if a value is not an integer.
    """
    value = job.retry_unless_exit
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list | tuple) else [value]
    try:
        return tuple(sorted({int(code) for code in values}))
    except (TypeError, ValueError) as exc:
        raise WorkflowTranslationError(
            f"Job {job.name!r}: retryUnlessExit {value!r} is not an exit code or a list of them"
        ) from exc
