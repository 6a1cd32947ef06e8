# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Event service on the local service: several payloads per PanDA job.

A work submitted with ``es`` set (see the plugin's ``event_service.py``)
has its jobs (payloads, *events*) cut into *event-service files* of up to
``max_events_per_job`` consecutive order ids, as iDDS cuts them:
``<es_label>:eventservice_<first order id>^<count>``. PanDA runs the events
of one such file in one PanDA job, one after another, and gives each event
to the payload as ``<file>^<n>`` (``n`` from 1), which the edge-node decoder
turns back into the job's pseudo input name through the order-id map.

Here, when a payload of an event-service work is launched, the ready
payloads of the same file are launched with it: one PanDA id, one worker
slot, run one after another. Each payload keeps its own content row
(status, attempt, exit code, working directory), so a failed payload is
retried alone, in a later PanDA job, and its successful siblings never rerun.
"""

from __future__ import annotations

__all__ = ["SCAN_FACTOR", "EventService", "event_service_of"]

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SCAN_FACTOR = 8
"""A PanDA job looks for its siblings among the next ``SCAN_FACTOR * N``
ready payloads only, so launching stays O(N) however long the ready queue
is (payloads of one file are released together, and so queued together,
unless their parents end in another order)."""


@dataclass(frozen=True)
class EventService:
    """How a work's payloads are grouped into PanDA jobs.

    Parameters
    ----------
    label : `str`
        ``es_label`` of the work.
    max_events : `int`
        Payloads per PanDA job (``max_events_per_job``).
    first_order_id : `int`
        Order id of the work's first payload.
    """

    label: str
    max_events: int
    first_order_id: int

    def group(self, map_id: int) -> int:
        """Return the event-service file (its index) of a payload.

        Parameters
        ----------
        map_id : `int`
            The payload's order id.

        Returns
        -------
        group : `int`
            Index of its file in the work.
        """
        return (map_id - self.first_order_id) // self.max_events

    def event_name(self, map_id: int) -> str:
        """Return the input name PanDA gives a payload (its event).

        Parameters
        ----------
        map_id : `int`
            The payload's order id.

        Returns
        -------
        name : `str`
            ``<label>:eventservice_<first order id of its file>^<n>``.
        """
        base = self.first_order_id + self.group(map_id) * self.max_events
        return f"{self.label}:eventservice_{base}^{map_id - base + 1}"

    def content_fields(self, map_id: int) -> dict[str, Any]:
        """Return the event fields iDDS gives a payload's content row.

        Parameters
        ----------
        map_id : `int`
            The payload's order id.

        Returns
        -------
        fields : `dict` [`str`, `~typing.Any`]
            ``path`` (its event-service file, ``^<count>`` left out, as iDDS
            stores it) and ``sub_map_id`` (its place in the file, from 0).
        """
        base = self.first_order_id + self.group(map_id) * self.max_events
        return {"path": f"{self.label}:eventservice_{base}", "sub_map_id": map_id - base}

    def siblings(
        self, first: int, candidates: Iterable[int], order_id: Callable[[int], int | None], limit: int
    ) -> list[int]:
        """Return the ready payloads to run in the same PanDA job as one.

        Parameters
        ----------
        first : `int`
            Job id of the payload being launched.
        candidates : `~collections.abc.Iterable` [`int`]
            Job ids of ready payloads, in queue order (may hold ``first``,
            repeats and payloads of other works).
        order_id : `~collections.abc.Callable`
            Order id of a job if it is a runnable payload of this work,
            else `None`.
        limit : `int`
            Most payloads in the PanDA job (``first`` included).

        Returns
        -------
        siblings : `list` [`int`]
            Up to ``limit - 1`` other payloads of ``first``'s file, each once,
            among the first ``SCAN_FACTOR * limit`` candidates.
        """
        first_map_id = order_id(first)
        if first_map_id is None or limit < 2:
            return []
        group = self.group(first_map_id)
        found: list[int] = []
        seen = {first}
        for candidate in itertools.islice(candidates, SCAN_FACTOR * limit):
            if candidate in seen:
                continue
            map_id = order_id(candidate)
            if map_id is None or self.group(map_id) != group:
                continue
            seen.add(candidate)
            found.append(candidate)
            if len(found) == limit - 1:
                break
        return found


def event_service_of(work: Any, order_ids: Iterable[int]) -> EventService | None:
    """Return the event-service grouping of a submitted work, if any.

    Parameters
    ----------
    work : `idds.doma.workflowv2.domapandawork.DomaPanDAWork`
        The decoded work.
    order_ids : `~collections.abc.Iterable` [`int`]
        Order ids of its payloads.

    Returns
    -------
    event_service : `EventService` or `None`
        `None` unless ``es`` is set with a label and at least 1 event per
        job (iDDS clears ``es`` itself when order ids are missing or
        repeated).
    """
    label = getattr(work, "es_label", None)
    max_events = int(getattr(work, "max_events_per_job", 0) or 0)
    ids = list(order_ids)
    if not getattr(work, "es", False) or not label or max_events < 1 or not ids:
        return None
    return EventService(str(label), max_events, min(ids))
