# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Work-level conditions of the local service, typed.

A request's conditions are stored as the JSON of `plan.ConditionSpec`
(``{"tree": ..., "true": [...], "false": [...]}``); `parse_condition` turns
one into a frozen `Condition` once, when the request is loaded, and the run
graph evaluates that against the statuses of the released works.
"""

from __future__ import annotations

__all__ = ["Check", "Clause", "Condition", "ConditionTree", "Operator", "parse_condition", "parse_tree"]

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from idds.common.constants import TransformStatus

from lsst.ctrl.bps.panda.idds_model import TRANSFORM_TERMINAL


class Operator(enum.Enum):
    """How a tree combines its clauses (iDDS ``AndCondition`` or ``Or``)."""

    AND = "and"
    OR = "or"


class Check(enum.Enum):
    """The work method a clause calls (``work.is_terminated`` ...)."""

    IS_TERMINATED = "is_terminated"
    IS_FINISHED = "is_finished"
    IS_SUBFINISHED = "is_subfinished"
    IS_FAILED = "is_failed"
    IS_CANCELLED = "is_cancelled"
    IS_EXPIRED = "is_expired"
    IS_SUSPENDED = "is_suspended"

    @classmethod
    def of(cls, method: str) -> Check:
        """Return the check of a method name; another name counts as
        ``is_terminated``.

        Parameters
        ----------
        method : `str`
            The stored method name.

        Returns
        -------
        check : `Check`
            Its check.
        """
        try:
            return cls(method)
        except ValueError:
            return cls.IS_TERMINATED

    @property
    def statuses(self) -> frozenset[TransformStatus]:
        """Transform statuses for which the method is true."""
        return _STATUSES.get(self, TRANSFORM_TERMINAL)


_STATUSES: dict[Check, frozenset[TransformStatus]] = {
    Check.IS_FINISHED: frozenset({TransformStatus.Finished}),
    Check.IS_SUBFINISHED: frozenset({TransformStatus.SubFinished}),
    Check.IS_FAILED: frozenset({TransformStatus.Failed}),
    Check.IS_CANCELLED: frozenset({TransformStatus.Cancelled}),
    Check.IS_EXPIRED: frozenset({TransformStatus.Expired}),
    Check.IS_SUSPENDED: frozenset({TransformStatus.Suspended}),
}


@dataclass(frozen=True)
class Clause:
    """One work check of a condition tree."""

    work: str
    """Internal id of the work checked."""
    check: Check
    statuses: frozenset[TransformStatus]
    """Statuses of the work for which the clause is true."""

    def value(self, status_of: Mapping[str, TransformStatus | None]) -> bool:
        """Return the clause's truth value (`False` for a work not released).

        Parameters
        ----------
        status_of : `~collections.abc.Mapping` [`str`, `TransformStatus`]
            Status by work internal id; `None` for a work not released
            (or missing).

        Returns
        -------
        value : `bool`
            Whether the work is released and in one of `statuses`.
        """
        status = status_of.get(self.work)
        return status is not None and status in self.statuses


@dataclass(frozen=True)
class ConditionTree:
    """Clauses and nested trees combined by one operator."""

    operator: Operator
    clauses: tuple[Clause | ConditionTree, ...]

    def value(self, status_of: Mapping[str, TransformStatus | None]) -> bool:
        """Return the tree's truth value now.

        Parameters
        ----------
        status_of : `~collections.abc.Mapping` [`str`, `TransformStatus`]
            Status by work internal id; `None` for a work not released
            (or missing).

        Returns
        -------
        value : `bool`
            Any clause true (`Operator.OR`) or all true (`Operator.AND`).
        """
        values = [clause.value(status_of) for clause in self.clauses]
        return any(values) if self.operator is Operator.OR else all(values)

    def works(self) -> Iterator[str]:
        """Yield the internal id of every work a clause checks, in order."""
        for clause in self.clauses:
            if isinstance(clause, Clause):
                yield clause.work
            else:
                yield from clause.works()


@dataclass(frozen=True)
class Condition:
    """A work-level condition: its tree and the works it releases."""

    internal_id: str
    tree: ConditionTree
    true_works: tuple[str, ...]
    """Released when the tree is true."""
    false_works: tuple[str, ...]
    """Released when the tree is false and every work it checks has ended."""
    works: tuple[str, ...]
    """The works the tree checks."""

    def targets(self, status_of: Mapping[str, TransformStatus | None]) -> tuple[str, ...] | None:
        """Return the works to release now, or `None` while undecided.

        Parameters
        ----------
        status_of : `~collections.abc.Mapping` [`str`, `TransformStatus`]
            Status by work internal id; `None` for a work not released
            (or missing).

        Returns
        -------
        targets : `tuple` [`str`] or `None`
            `true_works` when the tree is true, `false_works` when it is
            false and every checked work is released and terminated.
        """
        if self.tree.value(status_of):
            return self.true_works
        if all(_terminated(status_of.get(work)) for work in self.works):
            return self.false_works
        return None


def _terminated(status: TransformStatus | None) -> bool:
    return status is not None and status in TRANSFORM_TERMINAL


def parse_tree(tree: Mapping[str, Any]) -> ConditionTree:
    """Parse a stored condition tree.

    Parameters
    ----------
    tree : `~collections.abc.Mapping`
        ``{"op": "and"|"or", "clauses": [...]}`` where a clause is
        ``{"method": <name>, "work": <internal id>}`` or a nested tree.

    Returns
    -------
    tree : `ConditionTree`
        The typed tree.
    """
    clauses: list[Clause | ConditionTree] = []
    for clause in tree["clauses"]:
        if "clauses" in clause:
            clauses.append(parse_tree(clause))
        else:
            check = Check.of(str(clause["method"]))
            clauses.append(Clause(str(clause["work"]), check, check.statuses))
    return ConditionTree(Operator.OR if tree["op"] == "or" else Operator.AND, tuple(clauses))


def parse_condition(internal_id: str, spec: Mapping[str, Any]) -> Condition:
    """Parse a stored condition.

    Parameters
    ----------
    internal_id : `str`
        The condition's internal id.
    spec : `~collections.abc.Mapping`
        ``{"tree": ..., "true": [...], "false": [...]}`` as stored.

    Returns
    -------
    condition : `Condition`
        The typed condition.
    """
    tree = parse_tree(spec["tree"])
    return Condition(
        internal_id=internal_id,
        tree=tree,
        true_works=tuple(spec["true"]),
        false_works=tuple(spec["false"]),
        works=tuple(tree.works()),
    )
