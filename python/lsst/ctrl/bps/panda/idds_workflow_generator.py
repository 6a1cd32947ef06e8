# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Translate a `~lsst.ctrl.bps.GenericWorkflow` into an iDDS workflow.

One `~idds.doma.workflowv2.domapandawork.DomaPanDAWork` (a PanDA task) per
label and *task key* (command line, files and categorical attributes shared
by its jobs), split into evenly sized chunks of at most ``maxJobsPerTask``
jobs. Every payload job is one entry of its work's dependency map; every
edge between payload jobs is one dependency of the child's entry. The final
job(s) form their own work(s), started by an ``AndCondition`` once every
other work has terminated.

The generator is pure: it reads only its `ServiceSettings` and the
workflow, writes nothing and touches no network. It works in three linear
passes (describe every job, cut the tasks, build each dependency map once
and assign it once), so its cost grows linearly with the number of jobs and
edges.
"""

from __future__ import annotations

__all__ = ["GeneratedWorkflow", "IDDSWorkflowGenerator", "even_slices"]

import dataclasses
import functools
import itertools
import logging
import math
import operator
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import networkx
from idds.doma.workflowv2.domapandawork import DomaPanDAWork
from idds.workflowv2.workflow import AndCondition, Workflow

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowJob

from .collector_pause import collector_paused
from .command_line import (
    ORDER_ID_MAP_TOKEN,
    CommandLineError,
    CommandTemplate,
    FileRef,
    ResolveContext,
    ResolvedCommand,
    check_name,
    compose_runner_command,
    encode_hex,
    files_field,
)
from .constants import FINAL_PSEUDO_INPUT, NO_DIRECT_IO, RETRY_UNLESS_EXIT_ATTRIBUTE
from .dependency_map import MapZipper, encode_name, job_references, map_entries, reference_names
from .event_service import WorkEventService, add_event_fields
from .exceptions import WorkflowTranslationError
from .service_settings import ServiceSettings, TaskSettings
from .submit_record import TaskRecord
from .workflow_graph import FlatWorkflow, flatten

_LOG = logging.getLogger(__name__)

_NAME = operator.attrgetter("name")
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)

ORDER_ID_MAP_KEY = "orderIdMapFilename"
"""Files key of the order-id (job-name) map."""

QNODE_MAP_KEY = "qnodemap"
"""Files key of the qnode map."""

QNODE_MAP_FILENAME = "qnode_map.json"
"""Name the site decoder reads the qnode map from."""

TASK_LOG = {
    "destination": "local",
    "value": "log.tgz",
    "dataset": "PandaJob_#{pandaid}/",
    "token": "local",
    "param_type": "log",
    "type": "template",
}
"""The ``task_log`` of every work (PanDA keeps job logs locally)."""


@dataclasses.dataclass(slots=True)
class GeneratedWorkflow:
    """The result of `IDDSWorkflowGenerator.build`.

    Parameters
    ----------
    idds_workflow : `idds.workflowv2.workflow.Workflow`
        The iDDS workflow to submit.
    files_to_stage : `dict` [`str`, `str`]
        Target relative to the distribution endpoint (directories end in
        ``/``) to local source, for every file a job reads.
    tasks : `dict` [`str`, `TaskRecord`]
        Task name to label and job count, in work order.
    order_id_map : `dict` or `None`
        ``{label: {"<order id>": pseudo name}}`` to write to
        ``orderIdMapFilename`` when the job-name map is on.
    qnode_map : `dict` or `None`
        ``{"PH:<job>": pseudo name}`` to write to ``qnode_map.json`` when
        the qnode map is on.
    """

    idds_workflow: Workflow
    files_to_stage: dict[str, str]
    tasks: dict[str, TaskRecord]
    order_id_map: dict[str, dict[str, str]] | None = None
    qnode_map: dict[str, str] | None = None


@dataclasses.dataclass(slots=True)
class _JobFiles:
    """Files of jobs sharing the same inputs, outputs and executable."""

    key: int
    refs: dict[str, FileRef]
    files: dict[str, str]
    direct_io: str
    stage: dict[str, str]


@dataclasses.dataclass(slots=True)
class _Group:
    """Jobs of one label sharing a task key (one or more chunks)."""

    label: str
    command: ResolvedCommand
    files: _JobFiles
    names: list[str] = dataclasses.field(default_factory=list)
    jobs: list[GenericWorkflowJob] = dataclasses.field(default_factory=list)
    # Start of every job's pseudo input name (the final job's fixed base),
    # or `None` for the job's own name.
    base: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Chunk:
    """One task: a slice of a group."""

    task_name: str
    count: int
    group: _Group
    names: list[str]
    jobs: list[GenericWorkflowJob]
    order_id: int


def _is_dir(uri: str) -> bool:
    """Return whether a local source is a directory (URIs ending in ``/``).

    Parameters
    ----------
    uri : `str`
        Path or URI.

    Returns
    -------
    is_dir : `bool`
        Whether it names a directory.
    """
    if uri.endswith("/"):
        return True
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return os.path.isdir(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
    return False


def _assign_map(work: DomaPanDAWork, inputs: int, edges: int, zipped: str) -> None:
    """Give a work its dependency map, zipped, in one assignment.

    The ``DomaPanDAWork.dependency_map`` setter re-checks, item by item,
    what the generator guarantees by construction: names unique (job names
    are; map names carry the label and a per-label order id), each no
    longer than ``max_name_length`` (checked per job with the job's name
    in the error), no dependency listed twice (parents are deduplicated)
    and ``dependency_tasks`` (set by the caller). So the map is stored the
    way iDDS stores it once serialised (zipped; its getter unzips it),
    with the counts the setter records, and without its pass over every
    job.

    Parameters
    ----------
    work : `DomaPanDAWork`
        The work, ``dependency_tasks`` already set.
    inputs : `int`
        Number of jobs in the map.
    edges : `int`
        Number of dependencies in it.
    zipped : `str`
        The map in iDDS's zipped form.
    """
    work._dependency_map = zipped
    work.num_inputs = inputs
    work.num_dependencies = edges


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


_BPS_KEYS = {
    "request_memory": "requestMemory",
    "request_memory_max": "requestMemoryMax",
    "request_cpus": "requestCpus",
    "request_walltime": "requestWalltime",
}


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


class IDDSWorkflowGenerator:
    """Build the iDDS workflow of a generic workflow.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings (labels of the workflow read).
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow to translate.
    flat : `FlatWorkflow`, optional
        The workflow already flattened (`flatten`), to save a pass.
    archive_url : `str`, optional
        PanDA cache URL of a job archive holding the jobs' files (custom
        jobs): the decoder's direct-I/O field of every work, which makes
        it extract the archive instead of copying from the endpoint.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        generic_workflow: GenericWorkflow,
        flat: FlatWorkflow | None = None,
        archive_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.archive_url = archive_url
        self.generic_workflow = generic_workflow
        self._flat = flat
        self._templates: dict[tuple[Any, ...], CommandTemplate] = {}
        self._files: dict[tuple[Any, ...], _JobFiles] = {}
        self._files_by_id: dict[tuple[Any, ...], _JobFiles] = {}
        self._last_template: tuple[Any, Any, Any, CommandTemplate | None] = (None, None, None, None)
        self._last_files: tuple[Any, list[Any], list[Any], _JobFiles] | None = None
        # Job name to (its reference in its children's dependencies, as JSON
        # text; its task), set when the job's task is cut.
        self._where: dict[str, tuple[str, str]] = {}
        self._task_count = 0
        self._task_rank: dict[str, int] = {}
        self._label_counts: dict[str, tuple[int, int]] = {}
        self._stage: dict[str, str] = {}
        self._tasks: dict[str, TaskRecord] = {}
        self._order_map: dict[str, dict[str, str]] | None = {} if settings.enable_job_name_map else None
        self._qnode_map: dict[str, str] | None = (
            {} if settings.enable_qnode_map and not settings.enable_job_name_map else None
        )
        if settings.enable_qnode_map and settings.enable_job_name_map:
            _LOG.warning("enableJobNameMap and enableQnodeMap are both set; using the job-name map only")

    def build(self) -> GeneratedWorkflow:
        """Translate the workflow.

        Returns
        -------
        generated : `GeneratedWorkflow`
            The iDDS workflow and what submit needs with it.

        Raises
        ------
        WorkflowTranslationError
            Raised, naming the job, if a job cannot be expressed in the
            site decoder's format or exceeds the iDDS name length.
        """
        with collector_paused():
            return self._build()

    def _build(self) -> GeneratedWorkflow:
        """Translate the workflow (`build` without the GC switch).

        Returns
        -------
        generated : `GeneratedWorkflow`
            The iDDS workflow and what submit needs with it.
        """
        workflow = Workflow(name=self.generic_workflow.name)
        flat = self._flat if self._flat is not None else flatten(self.generic_workflow)
        works = self._add_works(workflow, flat, final=False)
        final_flat = self._final_flat()
        if final_flat is not None and len(final_flat):
            final_works = self._add_works(workflow, final_flat, final=True)
            self._gate(workflow, works, final_works)
        self._add_map_files()
        _LOG.info(
            "Translated %d job(s) into %d PanDA task(s)",
            sum(task.jobs for task in self._tasks.values()),
            len(self._tasks),
        )
        return GeneratedWorkflow(workflow, self._stage, self._tasks, self._order_map, self._qnode_map)

    def _final_flat(self) -> FlatWorkflow | None:
        """Return the final job(s) as a flat workflow, or `None`.

        Returns
        -------
        flat : `FlatWorkflow` or `None`
            The final job, or the jobs of a final workflow.
        """
        final = self.generic_workflow.get_final()
        if final is None:
            return None
        if isinstance(final, GenericWorkflow):
            return flatten(final)
        flat = FlatWorkflow(self.generic_workflow)
        flat.jobs[final.name] = final
        flat.virtual.add("\x00final")  # not simple: the final job is no graph node
        flat.preds[final.name] = []
        return flat

    def _add_works(self, workflow: Workflow, flat: FlatWorkflow, final: bool) -> list[DomaPanDAWork]:
        """Describe, cut and add the works of a flat workflow.

        Parameters
        ----------
        workflow : `idds.workflowv2.workflow.Workflow`
            Updated in place.
        flat : `FlatWorkflow`
            The jobs.
        final : `bool`
            Whether these are the final job(s).

        Returns
        -------
        works : `list` [`DomaPanDAWork`]
            The works added, in order.
        """
        fixed_base = final and isinstance(self.generic_workflow.get_final(), GenericWorkflowJob)
        groups = self._describe(flat, fixed_base)
        chunks = self._cut(groups)
        works = []
        with MapZipper() as zipper:
            for chunk in chunks:
                work = self._make_work(chunk, flat, zipper)
                workflow.add_work(work)
                works.append(work)
        return works

    def _gate(self, workflow: Workflow, works: list[DomaPanDAWork], final_works: list[DomaPanDAWork]) -> None:
        """Start the final works once every other work has terminated.

        Every main work is a condition, not only the works no other work
        depends on: a work can hold jobs with children and jobs without
        (a label split between feeding another label and ending a branch),
        and those jobs must end before the final job runs. The rule and
        its cost (one clause per work) are in ``doc/design.md``.

        Parameters
        ----------
        workflow : `idds.workflowv2.workflow.Workflow`
            Updated in place.
        works : `list` [`DomaPanDAWork`]
            The main works.
        final_works : `list` [`DomaPanDAWork`]
            The final job works.
        """
        if works:
            condition = AndCondition(conditions=[w.is_terminated for w in works], true_works=final_works)
            workflow.add_condition(condition)

    # ------------------------------------------------------------ pass 1

    def _describe(self, flat: FlatWorkflow, fixed_base: bool) -> dict[str, dict[tuple[Any, ...], _Group]]:
        """Group the jobs of every label by task key; name every job.

        Parameters
        ----------
        flat : `FlatWorkflow`
            The jobs.
        fixed_base : `bool`
            Whether the job's pseudo name starts with the fixed final-job
            base instead of its name.

        Returns
        -------
        groups : `dict` [`str`, `dict` [`tuple`, `_Group`]]
            Label to task key to group, in first-seen order.

        Raises
        ------
        WorkflowTranslationError
            Raised naming the job if it cannot be translated.
        """
        labels: dict[str, dict[tuple[Any, ...], _Group]] = {}
        graph_of = (lambda name: flat.top) if flat.simple else flat.graph_of
        for name, job in flat.jobs.items():
            try:
                key, command, files = self._job(name, job, graph_of(name))
                by_key = labels.get(job.label)
                if by_key is None:
                    by_key = labels[job.label] = {}
                    check_name(name, "label", job.label)
            except CommandLineError as exc:
                raise WorkflowTranslationError(str(exc)) from exc
            found = by_key.get(key)
            if found is None:
                base = FINAL_PSEUDO_INPUT if fixed_base else None
                found = by_key[key] = _Group(job.label, command, files, base=base)
            found.names.append(name)
            found.jobs.append(job)
        return labels

    def _job(
        self, name: str, job: GenericWorkflowJob, graph: GenericWorkflow
    ) -> tuple[tuple[Any, ...], ResolvedCommand, _JobFiles]:
        """Describe one job.

        Parameters
        ----------
        name : `str`
            Job name.
        job : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.
        graph : `lsst.ctrl.bps.GenericWorkflow`
            Workflow holding its files.

        Returns
        -------
        key : `tuple`
            Its task key.
        command : `ResolvedCommand`
            Its command line.
        files : `_JobFiles`
            Its files.
        """
        check_name(name, "job name", name)
        files = self._job_files(name, job, graph)
        template = self._template(name, job)
        try:
            values = template.values(job.cmdvals)
        except KeyError as exc:
            raise CommandLineError(name, f"{{{exc.args[0]}}} has no value in the job's cmdvals") from exc
        command = template.cached(values, files.key)
        if command is None:
            context = ResolveContext(name, self.settings.submit_env, files.refs, files.key)
            command = template.resolve(values, context)
        key = (
            command.text,
            files.key,
            job.compute_site,
            job.compute_cloud,
            job.queue,
            job.priority,
            job.number_of_retries,
            job.accounting_group,
            job.memory_multiplier,
        )
        return key, command, files

    def _template(self, name: str, job: GenericWorkflowJob) -> CommandTemplate:
        """Return the (cached) command template of a job.

        Parameters
        ----------
        name : `str`
            Job name (for errors).
        job : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.

        Returns
        -------
        template : `CommandTemplate`
            Its template.
        """
        exe = job.executable
        environment = job.environment
        last_exe, last_arguments, last_environment, last = self._last_template
        if last is not None and last_exe is exe and last_arguments is job.arguments:
            if last_environment == environment:
                return last  # same as the previous job
        key = (id(exe), job.arguments, tuple(environment.items()) if environment else ())
        template = self._templates.get(key)
        if template is None:
            if exe is None or not exe.src_uri:
                raise CommandLineError(name, "has no executable")
            executable = f"./{os.path.basename(exe.src_uri)}" if exe.transfer_executable else exe.src_uri
            template = CommandTemplate(
                executable,
                job.arguments or "",
                {str(k): str(v) for k, v in (environment or {}).items()},
                self.settings.placeholder_params,
            )
            self._templates[key] = template
        self._last_template = (exe, job.arguments, environment, template)
        return template

    def _job_files(self, name: str, job: GenericWorkflowJob, graph: GenericWorkflow) -> _JobFiles:
        """Return the (cached) file description of a job.

        Parameters
        ----------
        name : `str`
            Job name.
        job : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.
        graph : `lsst.ctrl.bps.GenericWorkflow`
            Workflow holding its files.

        Returns
        -------
        files : `_JobFiles`
            Its files.
        """
        inputs = graph.get_job_inputs(name, data=True)
        outputs = graph.get_job_outputs(name, data=True)
        exe = job.executable
        last = self._last_files
        if last is not None and last[0] is exe and last[1] == inputs and last[2] == outputs:
            return last[3]  # same file objects as the previous job (list == checks identity first)
        # Jobs usually share their file objects: look up by identity first
        # (the objects live as long as the workflow), then by names.
        fast = (id(exe), tuple(map(id, inputs)), tuple(map(id, outputs)))
        found = self._files_by_id.get(fast)
        if found is None:
            key = (id(exe), tuple(map(_NAME, inputs)), tuple(map(_NAME, outputs)))
            found = self._files.get(key)
            if found is None:
                found = self._files[key] = self._new_job_files(name, len(self._files), job, (inputs, outputs))
            self._files_by_id[fast] = found
        self._last_files = (exe, inputs, outputs, found)
        return found

    def _new_job_files(
        self, name: str, key: int, job: GenericWorkflowJob, io: tuple[list, list]
    ) -> _JobFiles:
        """Describe the files of a job (uncached `_job_files`).

        Parameters
        ----------
        name : `str`
            Job name (for errors).
        key : `int`
            Number identifying these files.
        job : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.
        io : `tuple` [`list`, `list`]
            Its input and output `~lsst.ctrl.bps.GenericWorkflowFile`.

        Returns
        -------
        files : `_JobFiles`
            Its files.
        """
        refs: dict[str, FileRef] = {}
        files: dict[str, str] = {}
        stage: dict[str, str] = {}
        direct: list[str] = []
        exe = job.executable
        if exe is not None and exe.transfer_executable and exe.src_uri:
            files["job_executable"] = self._stage_file(name, exe.src_uri, stage)
        for gwfile in io[0]:
            if not gwfile.wms_transfer:
                refs[gwfile.name] = FileRef(gwfile.src_uri)
                continue
            refs[gwfile.name] = FileRef(None)
            files[check_name(name, "file key", gwfile.name)] = self._stage_file(name, gwfile.src_uri, stage)
            if gwfile.job_access_remote:
                direct.append(gwfile.name)
        for gwfile in io[1]:
            value = os.path.basename(gwfile.src_uri.rstrip("/")) if gwfile.wms_transfer else gwfile.src_uri
            refs.setdefault(gwfile.name, FileRef(value))
        direct_io = self.archive_url or "+".join(direct) or NO_DIRECT_IO
        return _JobFiles(key, refs, files, direct_io, stage)

    def _stage_file(self, name: str, source: str, stage: dict[str, str]) -> str:
        """Register a file to copy to the distribution endpoint.

        Parameters
        ----------
        name : `str`
            Job name (for errors).
        source : `str`
            Local path or URI.
        stage : `dict` [`str`, `str`]
            The job's files to stage, updated in place.

        Returns
        -------
        target : `str`
            Its name relative to the endpoint (``/``-terminated for a
            directory).

        Raises
        ------
        WorkflowTranslationError
            Raised if another file has the same name at the endpoint.
        """
        target = os.path.basename(source.rstrip("/"))
        check_name(name, "file name", target)
        if _is_dir(source):
            target += "/"
        known = self._stage.setdefault(target, source)
        if known != source:
            raise WorkflowTranslationError(
                f"Job {name!r}: {source} and {known} would both be staged as {target}"
            )
        stage[target] = source
        return target

    # ------------------------------------------------------------ pass 2

    def _cut(self, labels: Mapping[str, Mapping[tuple, _Group]]) -> list[_Chunk]:
        """Cut every group into even chunks and name each job in its task.

        Parameters
        ----------
        labels : `~collections.abc.Mapping`
            Label to task key to group (from `_describe`).

        Returns
        -------
        chunks : `list` [`_Chunk`]
            The tasks, in order.
        """
        chunks = []
        limit = self.settings.max_jobs_per_task
        for label in self._label_order(labels):
            # Order ids and chunk numbers continue if the final workflow
            # reuses a label: map names stay unique per label.
            order_id, chunk_count = self._label_counts.get(label, (0, 0))
            for group in labels[label].values():
                for start, end in even_slices(len(group.names), limit):
                    self._task_count += 1
                    chunk_count += 1
                    task_name = (
                        f"{self.generic_workflow.name}_{self._task_count:02d}_{label}_{chunk_count:02d}"
                    )
                    names = group.names[start:end]
                    jobs = group.jobs[start:end]
                    self._name_jobs(task_name, label, names, self._pseudo_names(group, names, jobs), order_id)
                    self._tasks[task_name] = TaskRecord(label, len(names))
                    self._task_rank[task_name] = self._task_count
                    chunks.append(_Chunk(task_name, self._task_count, group, names, jobs, order_id))
                    order_id += len(names)
            self._label_counts[label] = (order_id, chunk_count)
        return chunks

    def _label_order(self, labels: Iterable[str]) -> list[str]:
        """Return the labels in dependency order where known.

        Parameters
        ----------
        labels : `~collections.abc.Iterable` [`str`]
            Labels in first-seen order.

        Returns
        -------
        ordered : `list` [`str`]
            The same labels, those of the workflow's label graph first in
            its topological order.
        """
        seen = list(labels)
        try:
            ordered = [label for label in self.generic_workflow.labels if label in seen]
        except networkx.NetworkXException:  # cyclic label graph (job ordering): first-seen order
            ordered = []
        return ordered + [label for label in seen if label not in ordered]

    @staticmethod
    def _pseudo_names(group: _Group, names: list[str], jobs: list[GenericWorkflowJob]) -> list[str]:
        """Return the pseudo input names of some jobs of a group.

        Made per chunk, just before the references that hold them: a
        realistic name (``{quantum uuid}_{label}_{data id}`` and its
        ``+qgraphNodeId:<uuid>``) is over 100 characters, and a list of
        them for the whole workflow would be its largest table.

        Parameters
        ----------
        group : `_Group`
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

    def _name_jobs(
        self, task_name: str, label: str, names: list[str], pseudos: list[str], order_id: int
    ) -> None:
        """Give every job of a chunk its dependency-map name and reference.

        Each job's reference (its entry in its children's ``dependencies``,
        as JSON text) and its task are recorded in ``_where``; the reference
        is all that is kept of its map name (see `reference_names`).

        Parameters
        ----------
        task_name : `str`
            The chunk's task.
        label : `str`
            Its label.
        names : `list` [`str`]
            Its job names.
        pseudos : `list` [`str`]
            Their pseudo input names.
        order_id : `int`
            Order id of the first job.

        Raises
        ------
        WorkflowTranslationError
            Raised naming the job if its name is longer than iDDS allows.
        """
        map_names = pseudos
        if self._order_map is not None:
            order_map = self._order_map.setdefault(label, {})
            orders = range(order_id, order_id + len(names))
            order_map.update(zip(map(str, orders), pseudos, strict=True))
            map_names = [f"{label}:orderIdMap_{index}" for index in orders]
        elif self._qnode_map is not None:
            placeholders = [f"PH:{name}" for name in names]
            self._qnode_map.update(zip(placeholders, pseudos, strict=True))
            map_names = placeholders
        self._check_lengths(names, map_names)
        references = job_references(encode_name(task_name), map(encode_name, map_names))
        self._where.update(zip(names, zip(references, itertools.repeat(task_name)), strict=True))

    def _check_lengths(self, names: list[str], map_names: list[str]) -> None:
        """Check the map names of a chunk against the iDDS name length.

        Parameters
        ----------
        names : `list` [`str`]
            Job names (for the error).
        map_names : `list` [`str`]
            Their map names.

        Raises
        ------
        WorkflowTranslationError
            Raised naming the first job whose map name is too long.
        """
        limit = self.settings.max_name_length
        if map_names and max(map(len, map_names)) > limit:
            name, map_name = next((n, m) for n, m in zip(names, map_names, strict=True) if len(m) > limit)
            raise WorkflowTranslationError(
                f"Job {name!r}: pseudo input name of {len(map_name)} characters exceeds the iDDS "
                f"limit of {limit} (IDDS_MAX_NAME_LENGTH); set enableJobNameMap or enableQnodeMap"
            )

    # ------------------------------------------------------------ pass 3

    def _make_work(self, chunk: _Chunk, flat: FlatWorkflow, zipper: MapZipper) -> DomaPanDAWork:
        """Create the work of one chunk; queue its dependency map for zipping.

        The map's entries are written as JSON text from the parents'
        references and handed to ``zipper``, which stores the map zipped in
        the work (see `_assign_map`).

        Parameters
        ----------
        chunk : `_Chunk`
            The task.
        flat : `FlatWorkflow`
            The jobs and their parents.
        zipper : `MapZipper`
            Zips the map.

        Returns
        -------
        work : `DomaPanDAWork`
            The work (its map is set when ``zipper`` delivers it).
        """
        where = self._where
        deps = [[where[p] for p in ps] for ps in map(flat.parents_function(), chunk.names)]
        literals = reference_names(encode_name(chunk.task_name), [where[n][0] for n in chunk.names])
        entries = map_entries(literals, chunk.order_id, (map(_FIRST, ds) for ds in deps))
        dependency_tasks = set(map(_SECOND, itertools.chain.from_iterable(deps)))
        dependency_tasks.discard(chunk.task_name)
        task = self._task_settings(chunk.group, chunk.jobs)
        work = self._new_work(chunk, task)
        work.dependency_tasks = sorted(dependency_tasks, key=self._task_rank.__getitem__)
        event_service = task.event_service
        if event_service is not None and event_service.enabled:
            entries, work.es_files = add_event_fields(
                entries, event_service.label, chunk.order_id, event_service.max_events, list(map(bool, deps))
            )
        zipper.add(entries, functools.partial(_assign_map, work, len(deps), sum(map(len, deps))))
        return work

    def _task_settings(self, group: _Group, jobs: list[GenericWorkflowJob]) -> TaskSettings:
        """Map the attributes of a chunk's jobs to PanDA task fields.

        Categorical attributes are equal within a group (task key);
        resources are the maximum over the chunk.

        Parameters
        ----------
        group : `_Group`
            The chunk's group.
        jobs : `list` [`lsst.ctrl.bps.GenericWorkflowJob`]
            Its jobs.

        Returns
        -------
        settings : `TaskSettings`
            The task's fields.
        """
        settings = self.settings
        first = jobs[0]
        rss = _chunk_max(jobs, "request_memory", settings.request_memory)
        rss_max = _chunk_max(jobs, "request_memory_max", settings.request_memory_max)
        cores = _chunk_max(jobs, "request_cpus", settings.request_cpus)
        # requestWalltime goes to PanDA as it is, in seconds.
        seconds = _chunk_max(jobs, "request_walltime", 0)
        walltime = seconds or settings.max_walltime_seconds
        requested = seconds
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
            cores=cores,
            walltime=walltime,
            attempts=_number(first, "numberOfRetries", first.number_of_retries, settings.number_of_retries),
            working_group=first.accounting_group or None,
            label=settings.label(group.label),
            event_service=settings.event_service.for_work(group.label, requested, walltime),
            retry_unless_exit=_exit_codes(first),
        )

    def _new_work(self, chunk: _Chunk, task: TaskSettings) -> DomaPanDAWork:
        """Create an empty work for a task.

        Parameters
        ----------
        chunk : `_Chunk`
            The task.
        task : `TaskSettings`
            The task's PanDA fields.

        Returns
        -------
        work : `DomaPanDAWork`
            The work, without dependency map.
        """
        count = chunk.count
        event_service = task.event_service or WorkEventService(
            False, chunk.group.label, self.settings.event_service.max_payloads, task.walltime
        )
        work = DomaPanDAWork(
            executable=self._runner_command(chunk.group),
            primary_input_collection={"scope": "pseudo_dataset", "name": f"pseudo_input_collection#{count}"},
            output_collections=[{"scope": "pseudo_dataset", "name": f"pseudo_output_collection#{count}"}],
            log_collections=[],
            dependency_map=[],
            task_name=chunk.task_name,
            task_queue=task.queue,
            task_log=dict(TASK_LOG),
            encode_command_line=True,
            task_rss=task.rss,
            task_rss_retry_offset=task.rss_retry_offset,
            task_rss_retry_step=task.rss_retry_step,
            task_rss_max=task.rss_max,
            task_cloud=task.cloud,
            task_site=task.site,
            task_priority=task.priority,
            core_count=task.cores,
            working_group=task.working_group,
            processing_type=task.label.processing_type,
            task_type=task.label.task_type,
            prodSourceLabel=task.label.prod_source_label,
            vo=task.label.vo,
            maxattempt=task.attempts,
            maxwalltime=event_service.walltime,
            max_name_length=self.settings.max_name_length,
            enable_job_name_map=self._order_map is not None,
            es=event_service.enabled,
            es_label=event_service.label,
            max_events_per_job=event_service.max_events,
        )
        if task.retry_unless_exit:
            setattr(work, RETRY_UNLESS_EXIT_ATTRIBUTE, list(task.retry_unless_exit))
        return work

    def _runner_command(self, group: _Group) -> str:
        """Return the pilot command of a task.

        Parameters
        ----------
        group : `_Group`
            The task's group.

        Returns
        -------
        command : `str`
            ``runnerCommand`` with the five decoder arguments.
        """
        settings = self.settings
        dist = settings.file_distribution_endpoint
        files = dict(group.files.files)
        runner = settings.runner_command
        if self._order_map is not None:
            files[ORDER_ID_MAP_KEY] = settings.order_id_map_filename
            runner = runner.replace(ORDER_ID_MAP_TOKEN, dist + settings.order_id_map_filename)
        elif self._qnode_map is not None:
            files[QNODE_MAP_KEY] = QNODE_MAP_FILENAME
        missing = [key for key in group.command.worker_files if key not in files]
        if missing:
            raise WorkflowTranslationError(f"Label {group.label!r}: <FILE:{missing[0]}> is not staged")
        encoded = encode_hex(group.command.text)
        return compose_runner_command(runner, encoded, dist, files_field(files), group.files.direct_io)

    def _add_map_files(self) -> None:
        """Add the enabled map files to the files to stage."""
        path = self.settings.submit_path
        if self._order_map is not None:
            name = self.settings.order_id_map_filename
            self._stage[name] = os.path.join(path, name)
        if self._qnode_map is not None:
            self._stage[QNODE_MAP_FILENAME] = os.path.join(path, QNODE_MAP_FILENAME)
