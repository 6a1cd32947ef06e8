# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Encode a `WorkflowPlan` as the iDDS request to send.

The third step of prepare (``flatten`` -> plan -> **encode** -> submit,
see ``doc/design.md``). This module alone turns the plan into iDDS objects
and text: one `~idds.doma.workflowv2.domapandawork.DomaPanDAWork` per
planned task, each job one entry of its work's dependency map (written as
JSON text and zipped by `dependency_map`), the final work(s) released by an
``AndCondition`` over every other work, the whole request serialised once,
and the one decision whether it must be split into steps. The result is an
`EncodedRequest`, which the transport sends as it is.

Its speed-ups live here and nowhere else: the garbage collector is paused
while the request is built and serialised (millions of short-lived
containers, none cyclic; the only pause in the package: pausing it around
the whole prepare instead measured the same, ``doc/performance.md``), and
maps are zipped on a background thread (`MapZipper`) while the next one is
written.
"""

from __future__ import annotations

__all__ = ["TASK_LOG", "EncodedRequest", "encode_build_request", "encode_request", "encode_workflow"]

import dataclasses
import functools
import itertools
import logging
from typing import TYPE_CHECKING, Any

from idds.common.utils import json_dumps
from idds.doma.workflowv2.domapandawork import DomaPanDAWork
from idds.workflowv2.workflow import AndCondition, Workflow

from .collector_pause import collector_paused
from .constants import BUILD_LABEL, RETRY_UNLESS_EXIT_ATTRIBUTE
from .dependency_map import MapZipper, encode_name, map_entries
from .event_service import add_event_fields
from .exceptions import WorkflowTranslationError
from .workflow_plan import WorkflowPlan, WorkPlan

if TYPE_CHECKING:
    from .remote_build import BuildTaskSettings

_LOG = logging.getLogger(__name__)

TASK_LOG = {
    "destination": "local",
    "value": "log.tgz",
    "dataset": "PandaJob_#{pandaid}/",
    "token": "local",
    "param_type": "log",
    "type": "template",
}
"""The ``task_log`` of every work (PanDA keeps job logs locally)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedRequest:
    """An iDDS request ready to send.

    Parameters
    ----------
    workflow : `idds.workflowv2.workflow.Workflow`
        The iDDS workflow. Its dependency maps are zipped, unless
        ``split``, when they are plain lists for iDDS to split.
    text : `str`
        The request as one JSON text (``idds.common.utils.json_dumps`` of
        ``workflow`` with zipped maps): what is sent when not ``split``,
        and what the submit directory keeps.
    split : `bool`
        Whether ``text`` is longer than ``max_request_length``, so that the
        workflow is sent in steps (``split_workflow_to_steps``).
    max_request_length : `int`
        Longest JSON text sent in one message (0: no limit).
    """

    workflow: Workflow
    text: str
    split: bool
    max_request_length: int

    @property
    def works(self) -> list[DomaPanDAWork]:
        """The works, in order (`list` [`DomaPanDAWork`])."""
        return list(self.workflow.template.works.values())


def encode_request(plan: WorkflowPlan, max_request_length: int) -> EncodedRequest:
    """Encode a plan as the iDDS request to send.

    Parameters
    ----------
    plan : `WorkflowPlan`
        The planned tasks.
    max_request_length : `int`
        Longest JSON text sent in one message (0: no limit); a longer
        request is split into steps when sent.

    Returns
    -------
    request : `EncodedRequest`
        The request.

    Raises
    ------
    WorkflowTranslationError
        Raised if the workflow cannot be serialised.
    """
    with collector_paused():
        return encode_workflow(_build_workflow(plan), max_request_length)


def encode_build_request(name: str, command: str, task: BuildTaskSettings) -> EncodedRequest:
    """Encode the request of a remote build: one ``build_task`` work.

    Parameters
    ----------
    name : `str`
        Request name (``uniqProcName``).
    command : `str`
        The build job's command line (`remote_build.build_command`).
    task : `~lsst.ctrl.bps.panda.remote_build.BuildTaskSettings`
        The build task's values.

    Returns
    -------
    request : `EncodedRequest`
        The request (never split).
    """
    work = DomaPanDAWork(
        executable=command,
        task_type="lsst_build",
        **_pseudo_collections(1),
        dependency_map=None,
        task_name=BUILD_LABEL,
        task_queue=task.queue,
        encode_command_line=True,
        prodSourceLabel="managed",
        processing_type=task.processing_type,
        task_log=dict(TASK_LOG),
        task_rss=task.rss,
        task_rss_max=task.rss_max,
        task_rss_retry_offset=0 if task.rss_retry_step else task.rss,
        task_rss_retry_step=task.rss_retry_step,
        task_cloud=task.cloud,
        task_site=task.site,
        task_priority=task.priority,
        maxattempt=task.attempts,
    )
    workflow = Workflow(name=name)
    workflow.add_work(work)
    return encode_workflow(workflow, 0)


def encode_workflow(workflow: Workflow, max_request_length: int) -> EncodedRequest:
    """Serialise an iDDS workflow once and decide whether to split it.

    Parameters
    ----------
    workflow : `idds.workflowv2.workflow.Workflow`
        The workflow (maps zipped or not). When it must be split, its
        maps are stored back as plain lists, which iDDS splits.
    max_request_length : `int`
        Longest JSON text sent in one message (0: no limit).

    Returns
    -------
    request : `EncodedRequest`
        The request.

    Raises
    ------
    WorkflowTranslationError
        Raised if the workflow cannot be serialised.
    """
    try:
        text = json_dumps(workflow)
    except (TypeError, ValueError) as exc:
        raise WorkflowTranslationError(f"The iDDS workflow cannot be serialised: {exc}") from exc
    split = bool(max_request_length) and len(text) > max_request_length
    if split:
        for work in workflow.template.works.values():
            work.dependency_map = work.dependency_map  # the public setter stores it as a plain list
    _LOG.info(
        "Encoded request %s: %d characters of JSON%s", workflow.name, len(text),
        f", above maxRequestLength {max_request_length}: sent in steps" if split else "",
    )  # fmt: skip
    return EncodedRequest(workflow, text, split, max_request_length)


def _build_workflow(plan: WorkflowPlan) -> Workflow:
    """Build the iDDS workflow of a plan, every map zipped.

    Parameters
    ----------
    plan : `WorkflowPlan`
        The planned tasks.

    Returns
    -------
    workflow : `idds.workflowv2.workflow.Workflow`
        The workflow.
    """
    planned = plan.works + plan.final_works
    places = _JobPlaces.of(planned)
    workflow = Workflow(name=plan.name)
    works = []
    with MapZipper() as zipper:
        for index, work_plan in enumerate(planned):
            work = _new_work(plan, work_plan)
            _add_map(work, work_plan, index, places, zipper)
            workflow.add_work(work)
            works.append(work)
    main, final = works[: len(plan.works)], works[len(plan.works) :]
    if main and final:
        # Every main work, not only those no work depends on: a work can
        # hold jobs with children and jobs without (doc/design.md).
        workflow.add_condition(AndCondition(conditions=[w.is_terminated for w in main], true_works=final))
    return workflow


@dataclasses.dataclass(frozen=True, slots=True)
class _JobPlaces:
    """Where every job is: its map name and its task.

    Parameters
    ----------
    jobs : `dict` [`str`, `tuple` [`str`, `int`]]
        Job name to its map name (the plan's string, not a copy: JSON
        literals are made where they are written, and freed with the
        map) and its task's index.
    prefixes : `list` [`str`]
        Each task's ``{"task":<name>,"inputname":`` (a job's reference
        in its children's dependencies is this, its literal and ``}``).
    task_names : `list` [`str`]
        Each task's name.
    """

    jobs: dict[str, tuple[str, int]]
    prefixes: list[str]
    task_names: list[str]

    @classmethod
    def of(cls, planned: list[WorkPlan]) -> _JobPlaces:
        """Index the jobs of every planned task.

        Parameters
        ----------
        planned : `list` [`WorkPlan`]
            Every task, in order.

        Returns
        -------
        places : `_JobPlaces`
            The index.
        """
        jobs: dict[str, tuple[str, int]] = {}
        for index, work in enumerate(planned):
            jobs.update(zip(work.job_names, zip(work.map_names, itertools.repeat(index)), strict=True))
        names = [work.task_name for work in planned]
        return cls(jobs, ['{"task":' + encode_name(name) + ',"inputname":' for name in names], names)


def _add_map(
    work: DomaPanDAWork, work_plan: WorkPlan, index: int, places: _JobPlaces, zipper: MapZipper
) -> None:
    """Write a work's dependency map and queue it for zipping.

    Parameters
    ----------
    work : `DomaPanDAWork`
        The work; its ``dependency_tasks`` (and ``es_files``) are set now,
        its map when ``zipper`` delivers it.
    work_plan : `WorkPlan`
        Its plan.
    index : `int`
        Its index among all tasks.
    places : `_JobPlaces`
        Where every job is.
    zipper : `MapZipper`
        Zips the map.
    """
    jobs, prefixes, parents = places.jobs, places.prefixes, work_plan.parents
    deps = [[jobs[p] for p in parents(name)] for name in work_plan.job_names]
    references = ([prefixes[t] + encode_name(name) + "}" for name, t in ds] for ds in deps)
    literals = [encode_name(name) for name in work_plan.map_names]
    entries = map_entries(literals, work_plan.order_id, references)
    tasks = {t for ds in deps for _, t in ds}
    tasks.discard(index)
    work.dependency_tasks = [places.task_names[t] for t in sorted(tasks)]
    event_service = work_plan.event_service
    if event_service.enabled:
        entries, work.es_files = add_event_fields(
            entries, event_service.label, work_plan.order_id, event_service.max_events, list(map(bool, deps))
        )
    zipper.add(entries, functools.partial(_assign_map, work, len(deps), sum(map(len, deps))))


def _assign_map(work: DomaPanDAWork, inputs: int, edges: int, zipped: str) -> None:
    """Give a work its dependency map, zipped, in one assignment.

    The one place the plugin writes an iDDS attribute directly. The
    ``DomaPanDAWork.dependency_map`` setter takes the map as a list of
    dicts (a million jobs: hundreds of megabytes) and re-checks, item by
    item, what the plan guarantees by construction (unique names no longer
    than ``max_name_length``, no dependency listed twice,
    ``dependency_tasks`` set). So the map is stored the way iDDS itself
    stores it once serialised (zipped; its getter unzips it), with the
    counts the setter records.

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


def _pseudo_collections(number: int) -> dict[str, Any]:
    """Return the collection arguments of a work (PanDA reads no dataset).

    Parameters
    ----------
    number : `int`
        The work's number in its request (from 1).

    Returns
    -------
    arguments : `dict` [`str`, `typing.Any`]
        ``primary_input_collection``, ``output_collections`` and
        ``log_collections`` for `DomaPanDAWork`.
    """
    return {
        "primary_input_collection": {"scope": "pseudo_dataset", "name": f"pseudo_input_collection#{number}"},
        "output_collections": [{"scope": "pseudo_dataset", "name": f"pseudo_output_collection#{number}"}],
        "log_collections": [],
    }


def _new_work(plan: WorkflowPlan, work_plan: WorkPlan) -> DomaPanDAWork:
    """Create a work for a planned task, without its dependency map.

    Parameters
    ----------
    plan : `WorkflowPlan`
        The whole plan (workflow-wide fields).
    work_plan : `WorkPlan`
        The task.

    Returns
    -------
    work : `DomaPanDAWork`
        The work.
    """
    task, number, event_service = work_plan.task, work_plan.number, work_plan.event_service
    work = DomaPanDAWork(
        executable=work_plan.executable,
        **_pseudo_collections(number),
        dependency_map=[],
        task_name=work_plan.task_name,
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
        max_name_length=plan.max_name_length,
        enable_job_name_map=plan.job_name_map,
        es=event_service.enabled,
        es_label=event_service.label,
        max_events_per_job=event_service.max_events,
    )
    if task.retry_unless_exit:
        setattr(work, RETRY_UNLESS_EXIT_ATTRIBUTE, list(task.retry_unless_exit))
    return work
