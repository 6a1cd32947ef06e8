"""With the real iDDS daemons: what iDDS makes of our submitted works.

The daemons (clerk, transformer, ...) turn a submitted request into one
transform per work and, per transform, one input and one output content
per job plus one input-dependency content per dependency. Nothing runs
(no JEDI), but this is where iDDS accepts or rejects the works' shape.
The assertions read the iDDS tables directly (psycopg2 in the realstack
venv).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rs_helpers import (
    Config,
    chain_workflow,
    enum_name,
    five_label,
    payload,
    service,
    shape_differences,
    three_label,
    unique_name,
)
from rs_stack import RealStack, local_backend, real_backend

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(600)]

SETTLE_TIMEOUT = 180.0
"""Seconds to wait for transforms and contents (about 10 s is typical)."""

_EDGES_SQL = """
SELECT ct.name, c.name, pt.name, p.name
  FROM contents d
  JOIN contents c ON c.transform_id = d.transform_id AND c.map_id = d.map_id
                 AND c.content_relation_type = 0
  JOIN contents p ON p.content_id = d.content_dep_id
  JOIN transforms ct ON ct.transform_id = d.transform_id
  JOIN transforms pt ON pt.transform_id = p.transform_id
 WHERE d.request_id = %s AND d.content_relation_type = 3
"""

_COUNTS_SQL = """
SELECT t.name, c.content_relation_type, count(c.content_id)
  FROM transforms t LEFT JOIN contents c ON c.transform_id = t.transform_id
 WHERE t.request_id = %s
 GROUP BY t.name, c.content_relation_type
"""


@pytest.fixture(scope="module")
def agents(realstack: RealStack) -> Iterator[RealStack]:
    """The stack with the daemons on, and an empty database for them."""
    realstack.truncate()  # earlier modules' requests would keep them busy
    realstack.up("--with-agents", label="agents start")
    try:
        yield realstack
    finally:
        realstack.up("--no-agents", label="agents stop")


def works_of(workflow: Any) -> dict[str, list[dict[str, Any]]]:
    """Work name -> its dependency map, as submitted."""
    return {work.get_work_name(): list(work.dependency_map) for work in workflow.get_all_works()}


def expected_edges(workflow: Any) -> set[tuple[str, str, str, str]]:
    """(child work, child job, parent work, parent job) of every dependency."""
    edges = set()
    for work_name, jobs in works_of(workflow).items():
        for job in jobs:
            for dep in job["dependencies"]:
                edges.add((work_name, job["name"], dep["task"], dep["inputname"]))
    return edges


def _counts(stack: RealStack, request_id: int) -> dict[str, dict[int, int]]:
    counts: dict[str, dict[int, int]] = {}
    for name, relation, number in stack.sql(_COUNTS_SQL, [request_id]):
        counts.setdefault(name, {})
        if relation is not None:
            counts[name][relation] = number
    return counts


def settled_counts(
    stack: RealStack, request_id: int, works: dict[str, list[Any]]
) -> dict[str, dict[int, int]]:
    """Wait until every work has a transform with all its outputs."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    counts: dict[str, dict[int, int]] = {}
    while time.monotonic() < deadline:
        counts = _counts(stack, request_id)
        if set(counts) >= set(works) and all(counts[n].get(1, 0) >= len(j) for n, j in works.items()):
            time.sleep(2)  # let a pass still writing dependency contents finish
            return _counts(stack, request_id)
        time.sleep(2)
    pytest.fail(f"iDDS did not build all transforms/contents in {SETTLE_TIMEOUT} s: {counts}")


def fan_workflow(name: str) -> Any:
    """a (3 jobs) -> b (1 job, needs all of a) -> c (2 jobs, each needs b)."""
    from idds.workflowv2.workflow import Workflow
    from rs_helpers import make_work

    a, b, c = make_work(name, 1, "a"), make_work(name, 2, "b"), make_work(name, 3, "c")
    a.dependency_map = [{"name": f"a{j}", "order_id": j, "dependencies": []} for j in range(3)]
    from_a = [{"task": a.get_work_name(), "inputname": f"a{j}"} for j in range(3)]
    b.dependency_map = [{"name": "b0", "order_id": 0, "dependencies": from_a}]
    from_b = [{"task": b.get_work_name(), "inputname": "b0"}]
    c.dependency_map = [{"name": f"c{j}", "order_id": j, "dependencies": from_b} for j in range(2)]
    b.dependency_tasks = [a.get_work_name()]
    c.dependency_tasks = [b.get_work_name()]
    workflow = Workflow(name=name)
    for work in (a, b, c):
        workflow.add_work(work)
    return workflow


@dataclass
class Case:
    """A submitted workflow and what iDDS must make of it."""

    request_id: int
    works: dict[str, list[dict[str, Any]]]
    edges: set[tuple[str, ...]]
    by_job_name: bool = False
    """Edges are GenericWorkflow (parent, child) job names, not work/job."""
    config: Any = None
    """The BpsConfig of a run submitted through PanDAService."""
    generic: Any = None
    """Its GenericWorkflow."""
    gated: set[str] = field(default_factory=set)
    """Works behind a condition (the final job): no transform yet."""


def _by_hand(stack: RealStack, builder: Callable[[str], Any]) -> Case:
    backend = real_backend(stack)
    workflow = builder(unique_name(builder.__name__))
    with backend.active():
        ret = backend.api().submit(workflow, username=None, use_dataset_name=False)
    assert ret[0] == 0 and ret[1][0] is True, ret
    return Case(ret[1][1], works_of(workflow), expected_edges(workflow))


def _through_service(make_config: Config, builder: Callable[[str], Any], **overrides: Any) -> Case:
    name = unique_name(builder.__name__)
    generic = builder(name)
    config = make_config(name, **overrides)
    svc = service(config)
    workdir = Path(config["submitPath"]).parent / f"{name}_cwd"
    workdir.mkdir(parents=True)
    final = generic.get_final()
    if final is not None:  # its script is staged from the working directory, like bps does
        (workdir / final.executable.src_uri).write_text("#!/bin/bash\necho final\n")
    with contextlib.chdir(workdir):
        workflow = svc.prepare(config, generic, out_prefix=config["submitPath"])
        works = works_of(workflow.idds_workflow)  # before a split moves the maps out
        svc.submit(workflow)
    # the final job's work waits for its AndCondition: no transform yet
    gated = {name for name, task in workflow.submit_record.tasks.items() if task.label == "finalJob"}
    works = {name: jobs for name, jobs in works.items() if name not in gated}
    # the GenericWorkflow's own edges, by job name (without the final job)
    edges = set(generic.edges)
    return Case(int(workflow.run_id), works, edges, True, config, generic, gated)


def three_label_final(name: str) -> Any:
    """ctrl_bps's 3-label test workflow with its final job."""
    from lsst.ctrl.bps.tests.gw_test_utils import make_3_label_workflow

    return make_3_label_workflow(name, True)


@pytest.fixture(scope="module")
def submitted(agents: RealStack, make_config: Config) -> dict[str, Case]:
    """All cases submitted at once, so that iDDS works on them together."""
    return {
        "chain_by_hand": _by_hand(agents, chain_workflow),
        "fan_by_hand": _by_hand(agents, fan_workflow),
        "3_label_service": _through_service(make_config, three_label),
        "5_label_service": _through_service(make_config, five_label),
        "3_label_service_steps": _through_service(make_config, three_label, maxRequestLength=3000),
        "3_label_final_service": _through_service(make_config, three_label_final),
    }


@pytest.mark.parametrize(
    "case",
    [
        "chain_by_hand",
        "fan_by_hand",
        "3_label_service",
        "5_label_service",
        "3_label_service_steps",
        "3_label_final_service",
    ],
)
def test_works_become_transforms_and_contents(
    agents: RealStack, submitted: dict[str, Case], case: str
) -> None:
    got = submitted[case]
    counts = settled_counts(agents, got.request_id, got.works)
    assert set(counts) == set(got.works), "every work became exactly one transform"
    assert not got.gated & set(counts), "a gated work has no transform before its condition"
    for name, jobs in got.works.items():
        deps = sum(len(job["dependencies"]) for job in jobs)
        assert counts[name].get(0, 0) == len(jobs), (name, counts[name])
        assert counts[name].get(1, 0) == len(jobs), (name, counts[name])
        assert counts[name].get(3, 0) == deps, (name, counts[name])
    rows = agents.sql(_EDGES_SQL, [got.request_id])
    if not got.by_job_name:
        assert {tuple(row) for row in rows} == got.edges
    else:
        # a pseudo input name is "<job name>+<placeholder>:<value>..."
        edges = [(parent.split("+", 1)[0], child.split("+", 1)[0]) for _, child, _, parent in rows]
        assert len(edges) == len(set(edges)), "every edge exactly once"
        assert set(edges) == got.edges


def test_detail_rows_agree_with_local(
    agents: RealStack, submitted: dict[str, Case], local_service: Any
) -> None:
    """Once iDDS has built transforms, its rows have the local rows' types."""
    got = submitted["chain_by_hand"]
    settled_counts(agents, got.request_id, got.works)
    real = real_backend(agents)
    with real.active():
        real_rows = payload(real.api().get_requests(request_id=got.request_id, with_detail=True))
    assert len(real_rows) == len(got.works) and all(row["request_id"] == got.request_id for row in real_rows)
    assert all(enum_name(row["transform_status"]) for row in real_rows)
    local = local_backend(local_service)
    with local.active():
        api = local.api()
        request_id = payload(api.submit(chain_workflow(unique_name("agree"))))
        local_rows = payload(api.get_requests(request_id=request_id, with_detail=True))
    assert len(local_rows) == len(real_rows)
    diffs = shape_differences(real_rows, local_rows)
    assert diffs == [], "\n".join(diffs)


def test_status_and_report_once_transforms_exist(agents: RealStack, submitted: dict[str, Case]) -> None:
    """The plugin on rows with transforms but no PanDA task (counters 0)."""
    from lsst.ctrl.bps import WmsStates

    got = submitted["3_label_service"]
    settled_counts(agents, got.request_id, got.works)
    svc = service(got.config)
    run_id = str(got.request_id)
    state, message = svc.get_status(run_id)
    assert state is WmsStates.RUNNING, (state, message)
    reports, message = svc.report(wms_workflow_id=run_id)
    assert message == ""
    (report,) = reports
    assert report.state is WmsStates.RUNNING
    assert report.total_number_jobs == len(got.generic)
    for label, counts in report.job_summary.items():
        assert sum(counts.values()) == len(got.generic.get_jobs_by_label(label)), (label, counts)


def test_contents_output_ext_agree_with_local(
    agents: RealStack, submitted: dict[str, Case], local_service: Any
) -> None:
    """Per-job rows (read by ``report``): the local rows' keys and types."""
    got = submitted["chain_by_hand"]
    settled_counts(agents, got.request_id, got.works)
    real = real_backend(agents)
    with real.active():
        real_reply = payload(real.api().get_contents_output_ext(request_id=got.request_id, workload_id=None))
    assert isinstance(real_reply, dict) and real_reply, real_reply
    real_jobs = [job for jobs in real_reply.values() for job in jobs]
    assert len(real_jobs) == sum(len(jobs) for jobs in got.works.values())
    local = local_backend(local_service)
    with local.active():
        api = local.api()
        request_id = payload(api.submit(chain_workflow(unique_name("contents"))))
        local_reply = payload(api.get_contents_output_ext(request_id=request_id, workload_id=None))
    local_jobs = [job for jobs in local_reply.values() for job in jobs]
    diffs = set(shape_differences(real_jobs[0], local_jobs[0]))
    # the one difference, documented in doc/local-vs-real.md
    documented = {".sub_map_id: only real", ".dep_sub_map_id: only real"}
    assert diffs <= documented, "\n".join(sorted(diffs - documented))
