# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Read a submitted iDDS workflow into plain specs the service can store.

The workflow arrives as real idds objects (`idds.workflowv2.workflow.Workflow`
holding `idds.doma.workflowv2.domapandawork.DomaPanDAWork` and conditions),
decoded by ``idds.common.utils.json_loads``.
"""

from __future__ import annotations

__all__ = [
    "ConditionSpec",
    "JobSpec",
    "PlanError",
    "RequestPlan",
    "WorkSpec",
    "plan_request",
    "step_maps",
    "unzip",
]

import base64
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from lsst.ctrl.bps.panda.constants import RETRY_UNLESS_EXIT_ATTRIBUTE, ZIP_PREFIX

from .event_service import EventService, event_service_of

_DEFAULT_MAX_ATTEMPT = 5
_MAP_FILE_KEY = "idds_dependency_map_file"


class PlanError(ValueError):
    """The workflow cannot be run (bad dependency, missing step data...)."""


@dataclass(frozen=True)
class JobSpec:
    """One dependency-map entry: one job."""

    name: str
    map_id: int
    dependencies: tuple[tuple[str, str], ...]
    """(task name, input name) of each parent job."""


@dataclass(frozen=True)
class WorkSpec:
    """One work (one transform, one PanDA task)."""

    internal_id: str
    name: str
    executable: str
    max_attempt: int
    core_count: int
    site: str | None
    cloud: str | None
    queue: str | None
    gated: bool
    jobs: tuple[JobSpec, ...]
    event_service: EventService | None = None
    """Set for an event-service work (several payloads per PanDA job)."""
    retry_unless_exit: tuple[int, ...] = ()
    """Exit codes not worth another attempt (ctrl_bps ``retryUnlessExit``)."""


@dataclass(frozen=True)
class ConditionSpec:
    """A work-level condition, as JSON-able data.

    ``tree`` is ``{"op": "and"|"or", "clauses": [...]}`` where a clause is
    ``{"method": "is_terminated", "work": <internal id>}`` or a nested tree.
    """

    internal_id: str
    tree: dict[str, Any]
    true_works: tuple[str, ...]
    false_works: tuple[str, ...]


@dataclass
class RequestPlan:
    """Everything needed to store and run one request."""

    name: str
    internal_id: str
    works: list[WorkSpec] = field(default_factory=list)
    conditions: list[ConditionSpec] = field(default_factory=list)


def unzip(data: Any) -> Any:
    """Undo iDDS ``zip_data`` (``"idds_zip:" + base64(zlib(json))``).

    Parameters
    ----------
    data : `typing.Any`
        Possibly zipped data.

    Returns
    -------
    data : `typing.Any`
        The unzipped value (unchanged when not zipped).
    """
    while isinstance(data, str) and data.startswith(ZIP_PREFIX):
        data = json.loads(zlib.decompress(base64.b64decode(data[9:])).decode())
    return data


def step_maps(workflow: Any) -> dict[str, list[dict[str, Any]]]:
    """Return the dependency maps carried by a workflow *step*.

    Parameters
    ----------
    workflow : `idds.workflowv2.workflow.Workflow`
        A step made by ``Workflow.split_workflow_to_steps``.

    Returns
    -------
    maps : `dict` [`str`, `list`]
        Work name -> dependency map.
    """
    batches = unzip(workflow.workflow_data) or {}
    return {name: unzip(data) for name, data in batches.items()}


def _work_max_attempt(work: Any) -> int:
    for value in (getattr(work, "maxAttempt", None), getattr(work, "num_retries", None)):
        if value:
            return int(value)
    return _DEFAULT_MAX_ATTEMPT


def _retry_unless_exit(work: Any) -> tuple[int, ...]:
    value = getattr(work, RETRY_UNLESS_EXIT_ATTRIBUTE, None)
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list | tuple) else [value]
    try:
        return tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError) as exc:
        raise PlanError(
            f"Work {work.task_name}: {RETRY_UNLESS_EXIT_ATTRIBUTE} {value!r} is not exit codes"
        ) from exc


def _dependency_map(work: Any, stored_maps: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    raw = unzip(getattr(work, "_dependency_map", None))
    if isinstance(raw, dict) and raw.get(_MAP_FILE_KEY):
        work_name = os.path.basename(str(raw[_MAP_FILE_KEY]))
        if work_name not in stored_maps:
            raise PlanError(f"No workflow step data for work {work_name}; submit its step first")
        raw = stored_maps[work_name]
    return list(raw or [])


def _jobs(work: Any, stored_maps: dict[str, list[dict[str, Any]]]) -> tuple[JobSpec, ...]:
    entries = _dependency_map(work, stored_maps)
    if not entries:
        return (JobSpec(name="pseudo_file", map_id=0, dependencies=()),)
    jobs = []
    for index, entry in enumerate(entries):
        deps = tuple((str(dep["task"]), str(dep["inputname"])) for dep in entry.get("dependencies", []))
        jobs.append(
            JobSpec(name=str(entry["name"]), map_id=int(entry.get("order_id", index)), dependencies=deps)
        )
    return tuple(jobs)


def _clause(item: Any) -> dict[str, Any]:
    owner = getattr(item, "__self__", None)
    if owner is not None and hasattr(owner, "get_internal_id"):
        return {"method": item.__name__, "work": owner.get_internal_id()}
    if hasattr(item, "conditions"):
        return _tree(item)
    raise PlanError(f"Unsupported condition clause {item!r}")


def _tree(condition: Any) -> dict[str, Any]:
    operator = getattr(getattr(condition, "operator", None), "name", "And")
    op = "or" if str(operator).lower() == "or" else "and"
    return {"op": op, "clauses": [_clause(item) for item in condition.conditions]}


def _ids(works: Any) -> tuple[str, ...]:
    return tuple(w.get_internal_id() for w in works or [] if hasattr(w, "get_internal_id"))


def _conditions(template: Any) -> list[ConditionSpec]:
    specs = []
    for cond_id, cond in template.conditions.items():
        specs.append(
            ConditionSpec(
                internal_id=str(cond_id),
                tree=_tree(cond),
                true_works=_ids(cond.true_works),
                false_works=_ids(cond.false_works),
            )
        )
    return specs


def _work_spec(work: Any, gated: bool, stored_maps: dict[str, list[dict[str, Any]]]) -> WorkSpec:
    jobs = _jobs(work, stored_maps)
    return WorkSpec(
        internal_id=str(work.get_internal_id()),
        name=str(work.task_name or work.get_work_name()),
        executable=str(work.executable or ""),
        max_attempt=_work_max_attempt(work),
        core_count=max(1, int(getattr(work, "core_count", None) or 1)),
        site=getattr(work, "task_site", None),
        cloud=getattr(work, "task_cloud", None),
        queue=getattr(work, "task_queue", None),
        gated=gated,
        jobs=jobs,
        event_service=event_service_of(work, (job.map_id for job in jobs)),
        retry_unless_exit=_retry_unless_exit(work),
    )


def _check_dependencies(plan: RequestPlan) -> None:
    names = {(work.name, job.name) for work in plan.works for job in work.jobs}
    for work in plan.works:
        for job in work.jobs:
            for dep in job.dependencies:
                if dep not in names:
                    raise PlanError(
                        f"Job {job.name} of {work.name} depends on unknown job {dep[1]} of {dep[0]}"
                    )


def plan_request(workflow: Any, stored_maps: dict[str, list[dict[str, Any]]]) -> RequestPlan:
    """Turn a decoded iDDS workflow into a `RequestPlan`.

    Parameters
    ----------
    workflow : `idds.workflowv2.workflow.Workflow`
        The main workflow (not a step).
    stored_maps : `dict` [`str`, `list`]
        Dependency maps uploaded by earlier step submissions, by work name.

    Returns
    -------
    plan : `RequestPlan`
        Works with their jobs, and the conditions gating works.

    Raises
    ------
    PlanError
        If a dependency names an unknown job or step data is missing.
    """
    template = workflow.template
    conditions = _conditions(template)
    gated = {wid for cond in conditions for wid in cond.true_works + cond.false_works}
    plan = RequestPlan(name=str(workflow.name), internal_id=str(workflow.get_internal_id()))
    plan.conditions = conditions
    for work_id, work in template.works.items():
        plan.works.append(_work_spec(work, str(work_id) in gated, stored_maps))
    _check_dependencies(plan)
    return plan
