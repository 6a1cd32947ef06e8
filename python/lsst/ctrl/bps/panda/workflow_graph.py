# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Flatten a `~lsst.ctrl.bps.GenericWorkflow` into payload jobs and edges.

PanDA runs payload jobs only. Noop jobs (job ordering) and job groups are
replaced by the dependencies they stand for: a child of a noop depends on
the noop's nearest payload ancestors, the first jobs of a group depend on
the group's parents, and a group's children depend on its last jobs.
"""

from __future__ import annotations

__all__ = ["FlatWorkflow", "flatten"]

from collections.abc import Callable, Collection, Iterator
from typing import Any

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowJob, GenericWorkflowNodeType

from .exceptions import WorkflowTranslationError

_BEGIN = "\x00begin:"
_END = "\x00end:"


class FlatWorkflow:
    """Payload jobs of a workflow and their payload parents.

    Parameters
    ----------
    top : `lsst.ctrl.bps.GenericWorkflow`
        The workflow flattened (holds the files of its own jobs).
    """

    def __init__(self, top: GenericWorkflow) -> None:
        self.top = top
        self.jobs: dict[str, GenericWorkflowJob] = {}
        self.labels: dict[str, None] = {}
        self.holder: dict[str, GenericWorkflow] = {}
        self.preds: dict[str, list[str]] = {}
        self.virtual: set[str] = set()
        self._memo: dict[str, tuple[str, ...]] = {}

    @property
    def simple(self) -> bool:
        """Whether the workflow had payload jobs only (`bool`)."""
        return not self.virtual and not self.holder

    def graph_of(self, name: str) -> GenericWorkflow:
        """Return the (sub)workflow holding a job and its files.

        Parameters
        ----------
        name : `str`
            Job name.

        Returns
        -------
        graph : `lsst.ctrl.bps.GenericWorkflow`
            The top workflow or the group holding the job.
        """
        return self.holder.get(name, self.top)

    def parents(self, name: str) -> Collection[str]:
        """Return the payload parents of a payload job, each once.

        Parameters
        ----------
        name : `str`
            Job name.

        Returns
        -------
        parents : `~collections.abc.Collection` [`str`]
            Parent job names.
        """
        if self.simple:
            return self.top.pred[name]
        found: dict[str, None] = {}
        for pred in self.preds[name]:
            if pred in self.virtual:
                found.update(dict.fromkeys(self._expand(pred)))
            else:
                found[pred] = None
        return found

    def parents_function(self) -> Callable[[str], Collection[str]]:
        """Return a fast equivalent of `parents` for loops over many jobs.

        Returns
        -------
        parents : `~collections.abc.Callable`
            Job name to its payload parents.
        """
        if self.simple:
            # The graph's predecessor dicts (networkx adjacency storage),
            # iterated directly: no view object per job.
            return self.top._pred.__getitem__
        return self.parents

    def _expand(self, node: str) -> tuple[str, ...]:
        """Return the nearest payload ancestors of a virtual node.

        Parameters
        ----------
        node : `str`
            Noop job name or group begin/end marker.

        Returns
        -------
        ancestors : `tuple` [`str`, ...]
            Payload job names.
        """
        memo, virtual = self._memo, self.virtual
        stack = [node]
        while stack:
            current = stack[-1]
            pending = [p for p in self.preds[current] if p in virtual and p not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            found: dict[str, None] = {}
            for pred in self.preds[current]:
                found.update(dict.fromkeys(memo[pred]) if pred in virtual else {pred: None})
            memo[current] = tuple(found)
        return memo[node]

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.jobs)


def _classify(graph: GenericWorkflow, flat: FlatWorkflow) -> tuple[list[tuple[str, Any]], set[str]]:
    """Record the payload and noop nodes of a graph; return its groups.

    Parameters
    ----------
    graph : `lsst.ctrl.bps.GenericWorkflow`
        A workflow or group.
    flat : `FlatWorkflow`
        Updated in place.

    Returns
    -------
    nodes : `list` [`tuple` [`str`, `~typing.Any`]]
        Name and node of every node.
    groups : `set` [`str`]
        Names of the group nodes.

    Raises
    ------
    WorkflowTranslationError
        Raised for a node type PanDA cannot run (lazy groups).
    """
    nodes = list(graph.nodes(data="job"))
    payload = GenericWorkflowNodeType.PAYLOAD
    jobs = {name: node for name, node in nodes if node.node_type is payload}
    flat.jobs.update(jobs)
    flat.labels.update(dict.fromkeys(node.label for node in jobs.values()))
    if graph is not flat.top:
        flat.holder.update(dict.fromkeys(jobs, graph))
    groups: set[str] = set()
    if len(jobs) == len(nodes):
        return nodes, groups
    for name, node in nodes:
        kind = node.node_type
        if kind is payload:
            continue
        if kind is GenericWorkflowNodeType.NOOP:
            flat.virtual.add(name)
        elif kind is GenericWorkflowNodeType.GROUP:
            groups.add(name)
        else:
            raise WorkflowTranslationError(
                f"Job {name!r} is a {kind.name} node, which PanDA cannot run (it has no lazy workflows)"
            )
    return nodes, groups


def _add_graph(graph: GenericWorkflow, entry: str | None, flat: FlatWorkflow) -> list[str]:
    """Flatten one graph (recursing into groups).

    Parameters
    ----------
    graph : `lsst.ctrl.bps.GenericWorkflow`
        A workflow or group.
    entry : `str` or `None`
        Marker every source node of the graph depends on (a group's
        begin), or `None` at the top.
    flat : `FlatWorkflow`
        Updated in place.

    Returns
    -------
    exits : `list` [`str`]
        Nodes the graph's successors depend on (its sinks, groups
        replaced by their end markers).
    """
    nodes, groups = _classify(graph, flat)
    if not groups and entry is None and not flat.virtual and graph is flat.top:
        return []  # payload jobs only: FlatWorkflow reads the edges from the graph
    pred = graph.pred
    for name, node in nodes:
        preds = [_END + p if p in groups else p for p in pred[name]]
        if not preds and entry is not None:
            preds = [entry]
        if name in groups:
            begin, end = _BEGIN + name, _END + name
            flat.virtual.update((begin, end))
            flat.preds[begin] = preds
            flat.preds[end] = _add_graph(node, begin, flat) or [begin]
        else:
            flat.preds[name] = preds
    succ = graph.succ
    return [_END + name if name in groups else name for name, _ in nodes if not succ[name]]


def flatten(workflow: GenericWorkflow) -> FlatWorkflow:
    """Return the payload jobs of a workflow with their payload parents.

    Parameters
    ----------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow (not its final job).

    Returns
    -------
    flat : `FlatWorkflow`
        Its payload jobs.

    Raises
    ------
    WorkflowTranslationError
        Raised for a node type PanDA cannot run.
    """
    flat = FlatWorkflow(workflow)
    _add_graph(workflow, None, flat)
    return flat
