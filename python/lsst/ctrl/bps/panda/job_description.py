# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Describe payload jobs: command line, files and the task key they share.

The first step of planning (`workflow_plan`): every job of a flattened
workflow gets its resolved command line, the files it reads and the
*task key* (command, files and categorical attributes) that decides which
PanDA task it can share with other jobs. Jobs of one label with the same
key form a `JobGroup`.
"""

from __future__ import annotations

__all__ = ["JobFiles", "JobGroup", "describe_jobs"]

import dataclasses
import operator
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowJob

from .command_line import (
    CommandLineError,
    CommandTemplate,
    FileRef,
    ResolveContext,
    ResolvedCommand,
    check_name,
)
from .constants import NO_DIRECT_IO
from .exceptions import WorkflowTranslationError
from .service_settings import ServiceSettings
from .workflow_graph import FlatWorkflow

_NAME = operator.attrgetter("name")


def _exe_key(exe: Any) -> tuple[str, bool] | None:
    """Return what a job's command and files take from its executable."""
    return None if exe is None else (exe.src_uri, bool(exe.transfer_executable))


@dataclasses.dataclass(frozen=True, slots=True)
class JobFiles:
    """Files of jobs sharing the same inputs, outputs and executable.

    Parameters
    ----------
    key : `int`
        Number identifying these files within one description pass.
    refs : `dict` [`str`, `FileRef`]
        File name to what ``<FILE:name>`` becomes on the worker.
    files : `dict` [`str`, `str`]
        Decoder files field: key to name at the distribution endpoint.
    direct_io : `str`
        Decoder direct-I/O field.
    """

    key: int
    refs: dict[str, FileRef]
    files: dict[str, str]
    direct_io: str


@dataclasses.dataclass(slots=True)
class JobGroup:
    """Jobs of one label sharing a task key (one or more PanDA tasks).

    Parameters
    ----------
    label : `str`
        Their label.
    command : `ResolvedCommand`
        Their command line.
    files : `JobFiles`
        Their files.
    base : `str` or `None`
        Start of every job's pseudo input name (the final job's fixed
        base), or `None` for the job's own name.
    names : `list` [`str`]
        Job names, in workflow order.
    jobs : `list` [`lsst.ctrl.bps.GenericWorkflowJob`]
        The jobs, in the same order.
    """

    label: str
    command: ResolvedCommand
    files: JobFiles
    base: str | None = None
    names: list[str] = dataclasses.field(default_factory=list)
    jobs: list[GenericWorkflowJob] = dataclasses.field(default_factory=list)


def describe_jobs(
    settings: ServiceSettings,
    flat: FlatWorkflow,
    *,
    base: str | None = None,
    archive_url: str | None = None,
    staged: Mapping[str, str] | None = None,
) -> tuple[dict[str, dict[tuple[Any, ...], JobGroup]], dict[str, str]]:
    """Group the jobs of every label by task key.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings (placeholders, submit-side environment).
    flat : `FlatWorkflow`
        The jobs.
    base : `str`, optional
        Fixed start of every pseudo input name (the final job's).
    archive_url : `str`, optional
        PanDA cache URL of the jobs' archive: their direct-I/O field.
    staged : `~collections.abc.Mapping` [`str`, `str`], optional
        Files already to stage (an earlier pass): a different source under
        the same name is refused.

    Returns
    -------
    groups : `dict` [`str`, `dict` [`tuple`, `JobGroup`]]
        Label to task key to group, in first-seen order.
    stage : `dict` [`str`, `str`]
        Target at the endpoint (directories end in ``/``) to local source,
        for the files these jobs read.

    Raises
    ------
    WorkflowTranslationError
        Raised naming the job if it cannot be translated.
    """
    describer = _Describer(settings, archive_url, dict(staged or {}))
    labels: dict[str, dict[tuple[Any, ...], JobGroup]] = {}
    graph_of = (lambda name: flat.top) if flat.simple else flat.graph_of
    for name, job in flat.jobs.items():
        try:
            key, command, files = describer.job(name, job, graph_of(name))
            by_key = labels.get(job.label)
            if by_key is None:
                by_key = labels[job.label] = {}
                check_name(name, "label", job.label)
        except CommandLineError as exc:
            raise WorkflowTranslationError(str(exc)) from exc
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = JobGroup(job.label, command, files, base)
        group.names.append(name)
        group.jobs.append(job)
    return labels, describer.new_stage


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


class _Describer:
    """Describe jobs one at a time, reusing what equal jobs share.

    Jobs of a label usually share their executable, argument template and
    file objects, so each is resolved once: the template by its text, the
    files by their names (with the executable's source in both keys). A job
    whose objects are those of the job before reuses its result at once.

    Parameters
    ----------
    settings : `ServiceSettings`
        Plugin settings.
    archive_url : `str` or `None`
        Direct-I/O field for every job (custom jobs), or `None`.
    stage : `dict` [`str`, `str`]
        Files to stage known so far; the new ones are added.
    """

    def __init__(self, settings: ServiceSettings, archive_url: str | None, stage: dict[str, str]) -> None:
        self._settings = settings
        self._archive_url = archive_url
        self._stage = stage
        self._known = set(stage)
        self._templates: dict[tuple[Any, ...], CommandTemplate] = {}
        self._files: dict[tuple[Any, ...], JobFiles] = {}
        self._last_template: tuple[Any, Any, Any, CommandTemplate | None] = (None, None, None, None)
        self._last_files: tuple[Any, list[Any], list[Any], JobFiles] | None = None

    @property
    def new_stage(self) -> dict[str, str]:
        """Files to stage added by this pass (`dict` [`str`, `str`])."""
        return {target: source for target, source in self._stage.items() if target not in self._known}

    def job(
        self, name: str, job: GenericWorkflowJob, graph: GenericWorkflow
    ) -> tuple[tuple[Any, ...], ResolvedCommand, JobFiles]:
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
        files : `JobFiles`
            Its files.

        Raises
        ------
        CommandLineError
            Raised naming the job if its command cannot be carried.
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
            context = ResolveContext(name, self._settings.submit_env, files.refs, files.key)
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
        """Return the command template of a job (made once per text).

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
        exe, environment = job.executable, job.environment
        last_exe, last_arguments, last_environment, last = self._last_template
        if last is not None and last_exe is exe and last_arguments is job.arguments:
            if last_environment == environment:
                return last  # same as the previous job
        key = (_exe_key(exe), job.arguments, tuple(environment.items()) if environment else ())
        template = self._templates.get(key)
        if template is None:
            if exe is None or not exe.src_uri:
                raise CommandLineError(name, "has no executable")
            executable = f"./{os.path.basename(exe.src_uri)}" if exe.transfer_executable else exe.src_uri
            template = self._templates[key] = CommandTemplate(
                executable,
                job.arguments or "",
                {str(k): str(v) for k, v in (environment or {}).items()},
                self._settings.placeholder_params,
            )
        self._last_template = (exe, job.arguments, environment, template)
        return template

    def _job_files(self, name: str, job: GenericWorkflowJob, graph: GenericWorkflow) -> JobFiles:
        """Return the file description of a job (made once per file set).

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
        files : `JobFiles`
            Its files.
        """
        inputs = graph.get_job_inputs(name, data=True)
        outputs = graph.get_job_outputs(name, data=True)
        exe = job.executable
        last = self._last_files
        if last is not None and last[0] is exe and last[1] == inputs and last[2] == outputs:
            return last[3]  # same file objects as the previous job (list == checks identity first)
        key = (_exe_key(exe), tuple(map(_NAME, inputs)), tuple(map(_NAME, outputs)))
        found = self._files.get(key)
        if found is None:
            found = self._files[key] = self._new_files(name, len(self._files), job, (inputs, outputs))
        self._last_files = (exe, inputs, outputs, found)
        return found

    def _new_files(self, name: str, key: int, job: GenericWorkflowJob, io: tuple[list, list]) -> JobFiles:
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
        files : `JobFiles`
            Its files.
        """
        refs: dict[str, FileRef] = {}
        files: dict[str, str] = {}
        direct: list[str] = []
        exe = job.executable
        if exe is not None and exe.transfer_executable and exe.src_uri:
            files["job_executable"] = self._stage_file(name, exe.src_uri)
        for gwfile in io[0]:
            if not gwfile.wms_transfer:
                refs[gwfile.name] = FileRef(gwfile.src_uri)
                continue
            refs[gwfile.name] = FileRef(None)
            files[check_name(name, "file key", gwfile.name)] = self._stage_file(name, gwfile.src_uri)
            if gwfile.job_access_remote:
                direct.append(gwfile.name)
        for gwfile in io[1]:
            value = os.path.basename(gwfile.src_uri.rstrip("/")) if gwfile.wms_transfer else gwfile.src_uri
            refs.setdefault(gwfile.name, FileRef(value))
        direct_io = self._archive_url or "+".join(direct) or NO_DIRECT_IO
        return JobFiles(key, refs, files, direct_io)

    def _stage_file(self, name: str, source: str) -> str:
        """Register a file to copy to the distribution endpoint.

        Parameters
        ----------
        name : `str`
            Job name (for errors).
        source : `str`
            Local path or URI.

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
        return target
