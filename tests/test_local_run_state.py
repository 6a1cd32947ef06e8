# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The local service's run state machine, without a database."""

from __future__ import annotations

import pytest
from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

from lsst.ctrl.bps.panda.local.conditions import Check, Operator, parse_condition
from lsst.ctrl.bps.panda.local.graph import AttemptOutcome, JobState, RunGraph, StoredRequest, TransformState
from lsst.ctrl.bps.panda.local.run_events import EventKind, RunEvent

_FINAL_SPEC = {
    "tree": {"op": "and", "clauses": [{"method": "is_terminated", "work": "w1"}]},
    "true": ["w2"],
    "false": [],
}


def _transform(tid: int, iid: str, gated: bool = False, max_attempt: int = 2) -> TransformState:
    status = TransformStatus.New if gated else TransformStatus.Transforming
    return TransformState(tid, 1, iid, f"task{tid}", "run ${IN/L}", max_attempt, 1, gated, not gated, status)


def _request() -> StoredRequest:
    """Work w1: job a -> job b; gated work w2 (final job f) after w1."""
    jobs = [
        JobState(n, 1, tid, n, name, ContentStatus.New)
        for n, tid, name in ((1, 1, "a"), (2, 1, "b"), (3, 2, "f"))
    ]
    return StoredRequest(
        request_id=1,
        status=RequestStatus.Transforming,
        aborted=False,
        transforms=[_transform(1, "w1"), _transform(2, "w2", gated=True)],
        jobs=jobs,
        deps=[(2, 1)],
        conditions=[parse_condition("c1", _FINAL_SPEC)],
        fired=set(),
    )


def _run(
    graph: RunGraph, exit_codes: dict[str, int], outcomes: list[AttemptOutcome | None] | None = None
) -> list[str]:
    """Run every launch to its end; return the job names in launch order.

    The outcome of each attempt goes to ``outcomes`` when given.
    """
    names = []
    outcomes = [] if outcomes is None else outcomes
    graph.settle()
    launches = graph.next_launches()
    while launches:
        for launch in launches:
            names.append(launch.name)
            graph.free += launch.slots
            outcomes.append(
                graph.complete(launch.job_id, launch.panda_id, exit_codes.get(launch.name, 0), 0.0)
            )
        graph.settle()
        launches = graph.next_launches()
    return names


def test_condition_parsed_once_and_evaluated() -> None:
    cond = parse_condition(
        "c",
        {
            "tree": {
                "op": "or",
                "clauses": [
                    {"method": "is_finished", "work": "x"},
                    {"op": "and", "clauses": [{"method": "unknown_method", "work": "y"}]},
                ],
            },
            "true": ["t"],
            "false": ["f"],
        },
    )
    assert cond.tree.operator is Operator.OR
    assert cond.works == ("x", "y")
    assert cond.tree.clauses[0].check is Check.IS_FINISHED  # type: ignore[union-attr]
    assert cond.targets({"x": TransformStatus.Transforming, "y": None}) is None
    assert cond.targets({"x": TransformStatus.Finished, "y": None}) == ("t",)
    assert cond.targets({"x": TransformStatus.Failed, "y": TransformStatus.Failed}) == ("t",)  # terminated
    assert cond.targets({"x": TransformStatus.Failed, "y": None}) is None
    and_cond = parse_condition("d", {**_FINAL_SPEC, "true": [], "false": ["z"]})
    assert and_cond.tree.operator is Operator.AND
    assert and_cond.targets({"w1": TransformStatus.Failed}) == ()


def test_chain_runs_then_final_job_released_by_condition() -> None:
    graph = RunGraph(slots=4)
    graph.load(_request())
    assert _run(graph, {}) == ["a", "b", "f"]
    assert graph.requests[1].status == RequestStatus.Finished
    changes = graph.take_changes()
    assert {job.job_id for job in changes.jobs} == {1, 2, 3}
    assert changes.requests[0].fired == {"c1"}
    assert graph.take_changes().jobs == ()


def test_failure_retried_then_missing_child_and_retry_command() -> None:
    graph = RunGraph(slots=1)
    graph.load(_request())
    outcomes: list[AttemptOutcome | None] = []
    assert _run(graph, {"a": 1}, outcomes) == ["a", "a", "f"]
    assert outcomes == [AttemptOutcome.RETRY, AttemptOutcome.FAILED, AttemptOutcome.FINISHED]
    req = graph.requests[1]
    assert req.status == RequestStatus.SubFinished
    assert graph.jobs[2].status == ContentStatus.Missing
    assert graph.retry(1)
    assert req.status == RequestStatus.Transforming and not req.fired
    assert graph.transforms[2].released is False
    assert _run(graph, {}) == ["a", "b", "f"]
    assert req.status == RequestStatus.Finished
    assert graph.jobs[1].attempt_nr == 3
    assert not graph.retry(1)  # nothing failed


def test_exit_code_in_retry_unless_exit_fails_at_once() -> None:
    request = _request()
    request.transforms[0].retry_unless_exit = frozenset({3})
    graph = RunGraph(slots=1)
    graph.load(request)
    outcomes: list[AttemptOutcome | None] = []
    assert _run(graph, {"a": 3}, outcomes) == ["a", "f"]
    assert outcomes == [AttemptOutcome.FAILED_NO_RETRY, AttemptOutcome.FINISHED]
    assert graph.jobs[1].status == ContentStatus.FinalFailed and graph.jobs[1].attempt_nr == 1


def test_abort_kills_running_and_cancels_the_rest() -> None:
    graph = RunGraph(slots=1)
    graph.load(_request())
    graph.settle()
    (launch,) = graph.next_launches()
    assert graph.abort(1) == [launch.panda_id]
    graph.settle()
    assert graph.requests[1].status == RequestStatus.Cancelled
    assert graph.complete(launch.job_id, launch.panda_id, 143, 0.0) is None  # cancelled already


def test_load_recovers_attempts_left_running() -> None:
    stored = _request()
    job = stored.jobs[0]
    job.status, job.panda_id, job.attempt_nr = ContentStatus.Processing, 7, 1
    graph = RunGraph(slots=2)
    graph.recorded_exit = lambda job: None  # no exit code file: the attempt is lost
    graph.load(stored)
    assert graph.jobs[1].status == ContentStatus.Activated
    assert graph.jobs[1].lost_attempts == 1
    assert +graph.transforms[1].counts == {ContentStatus.Activated.value: 1, ContentStatus.New.value: 1}
    assert _run(graph, {"a": 1}) == ["a", "a", "f"]  # the lost attempt is not counted


def test_load_completes_attempts_that_ended_while_down() -> None:
    stored = _request()
    stored.jobs[0].status, stored.jobs[0].panda_id = ContentStatus.Processing, 7
    graph = RunGraph(slots=2)
    graph.recorded_exit = lambda job: (0, 5.0)
    graph.load(stored)
    assert graph.jobs[1].status == ContentStatus.Available
    assert _run(graph, {}) == ["b", "f"]


def test_extend_adds_works_and_conditions() -> None:
    stored = _request()
    graph = RunGraph(slots=2)
    graph.load(stored)
    added = StoredRequest(
        1,
        RequestStatus.Transforming,
        False,
        transforms=[_transform(3, "w3")],
        jobs=[JobState(4, 1, 3, 0, "g", ContentStatus.New)],
        deps=[(4, 2)],
        conditions=stored.conditions,
        fired=set(),
    )
    graph.load(added)
    assert len(graph.requests[1].conditions) == 1
    assert _run(graph, {}) == ["a", "b", "g", "f"]


def test_command_event_carries_a_future() -> None:
    event = RunEvent.command(EventKind.RETRY, 4)
    assert event.result is not None and not event.result.done()
    with pytest.raises(ValueError):
        RunEvent.command(EventKind.LOAD, 4)
