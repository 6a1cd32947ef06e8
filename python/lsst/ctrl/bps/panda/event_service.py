# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Event-service settings: several payloads per PanDA job.

``enableEventService: "label[:N],..."`` puts the jobs (payloads) of those
labels in event-service works: PanDA runs up to N of them, one after the
other, in one PanDA job, each payload being one *event* of an *event-service
file* (``<label>:eventservice_<first order id>^<count>``). N is the
label's own number, else ``maxPayloadsPerPandaJob``; when the task has a
``requestWalltime`` and ``maxWmsJobWalltime`` is set (both in seconds),
N = floor(maxWmsJobWalltime / requestWalltime) instead, and a work whose N is
below 2 runs without the event service. Event service needs the order-id
(job-name) map, which it switches on.

The event-service fields of a work (``es``, ``es_label``,
``max_events_per_job``, ``es_files`` and each map entry's ``map_id``,
``sub_map_id`` and ``es_name``) are the ones iDDS's
``DomaPanDAWork.construct_es_files`` derives from a map of consecutive order
ids; they are computed here because the generator hands iDDS its maps
already zipped.
"""

from __future__ import annotations

__all__ = ["EventServiceSettings", "WorkEventService", "add_event_fields", "parse_labels"]

import dataclasses
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .dependency_map import encode_name
from .exceptions import PanDAConfigError

_KEY = "enableEventService"
_OFF = ("", "none", "false", "0", "no", "off")


@dataclasses.dataclass(frozen=True, slots=True)
class WorkEventService:
    """Event-service fields of one work.

    Parameters
    ----------
    enabled : `bool`
        ``es``: whether PanDA runs the work's payloads as events.
    label : `str`
        ``es_label`` (the label of the work's jobs).
    max_events : `int`
        ``max_events_per_job``: payloads per PanDA job.
    walltime : `int`
        ``maxwalltime`` in seconds (one PanDA job runs several payloads).
    """

    enabled: bool
    label: str
    max_events: int
    walltime: int


def parse_labels(text: str, default: int) -> Mapping[str, int]:
    """Parse ``enableEventService``.

    Parameters
    ----------
    text : `str`
        ``"label[:N],..."``.
    default : `int`
        N of a label given without one (``maxPayloadsPerPandaJob``).

    Returns
    -------
    labels : `~collections.abc.Mapping` [`str`, `int`]
        Label to its payloads per PanDA job.

    Raises
    ------
    PanDAConfigError
        Raised naming the item if a label is empty or N is not a positive
        number.
    """
    labels: dict[str, int] = {}
    for item in text.split(","):
        label, _, number = (part.strip() for part in item.partition(":"))
        if not label:
            raise PanDAConfigError(_KEY, f"empty label in {text!r} (expected 'label[:N],...')")
        try:
            count = int(number) if number else default
        except ValueError as exc:
            raise PanDAConfigError(_KEY, f"{item.strip()!r}: {number!r} is not a number") from exc
        if count <= 0:
            raise PanDAConfigError(_KEY, f"{item.strip()!r}: payloads per PanDA job must be positive")
        labels[label] = count
    return MappingProxyType(labels)


@dataclasses.dataclass(frozen=True, slots=True)
class EventServiceSettings:
    """The event-service keys of a submission.

    Parameters
    ----------
    labels : `~collections.abc.Mapping` [`str`, `int`]
        Event-service labels and their payloads per PanDA job.
    max_payloads : `int`
        ``maxPayloadsPerPandaJob`` (also the ``max_events_per_job`` of
        the other works, as the existing plugin sends it).
    max_wms_job_walltime : `int` or `None`
        ``maxWmsJobWalltime`` in seconds.
    """

    labels: Mapping[str, int]
    max_payloads: int
    max_wms_job_walltime: int | None

    @classmethod
    def from_values(cls, spec: Any, max_payloads: Any, max_walltime: Any) -> EventServiceSettings:
        """Check and convert the raw configuration values.

        Parameters
        ----------
        spec : `~typing.Any`
            ``enableEventService`` (`None` or a string).
        max_payloads : `~typing.Any`
            ``maxPayloadsPerPandaJob``.
        max_walltime : `~typing.Any`
            ``maxWmsJobWalltime`` (`None` if unset).

        Returns
        -------
        settings : `EventServiceSettings`
            The settings.

        Raises
        ------
        PanDAConfigError
            Raised naming the key of an invalid value.
        """
        default = _positive_int("maxPayloadsPerPandaJob", max_payloads)
        wall = None if max_walltime in (None, "") else _positive_int("maxWmsJobWalltime", max_walltime)
        text = "" if spec is None else str(spec).strip()
        labels = MappingProxyType({}) if text.lower() in _OFF else parse_labels(text, default)
        return cls(labels, default, wall)

    @property
    def enabled(self) -> bool:
        """Whether any label is in event-service mode (`bool`)."""
        return bool(self.labels)

    def for_work(self, label: str, requested: int, walltime: int) -> WorkEventService:
        """Return the event-service fields of a work.

        Parameters
        ----------
        label : `str`
            Label of the work's jobs.
        requested : `int`
            The task's ``requestWalltime`` in seconds (0 if unset).
        walltime : `int`
            The task's ``maxwalltime`` without the event service.

        Returns
        -------
        fields : `WorkEventService`
            The work's fields.
        """
        count = self.labels.get(label, self.max_payloads)
        if label not in self.labels:
            return WorkEventService(False, label, count, walltime)
        if requested and self.max_wms_job_walltime:
            count = self.max_wms_job_walltime // requested
            if count < 2:
                return WorkEventService(False, label, count, walltime)
        if requested:
            walltime = requested * count
        elif self.max_wms_job_walltime:
            walltime = self.max_wms_job_walltime
        return WorkEventService(True, label, count, walltime)


def _positive_int(key: str, value: Any) -> int:
    """Return a positive whole number, or raise naming the key.

    Parameters
    ----------
    key : `str`
        Configuration key.
    value : `~typing.Any`
        Its value.

    Returns
    -------
    number : `int`
        The value.

    Raises
    ------
    PanDAConfigError
        Raised if not a positive number.
    """
    try:
        number = math.floor(float(value)) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number <= 0:
        raise PanDAConfigError(key, f"{value!r} is not a positive number")
    return number


def add_event_fields(
    entries: Sequence[str], label: str, first_order_id: int, max_events: int, has_dependencies: Sequence[bool]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Give an event-service work's map entries their event fields.

    Parameters
    ----------
    entries : `~collections.abc.Sequence` [`str`]
        The map's entries as JSON text (consecutive order ids).
    label : `str`
        ``es_label``.
    first_order_id : `int`
        Order id of the first entry.
    max_events : `int`
        Payloads per PanDA job.
    has_dependencies : `~collections.abc.Sequence` [`bool`]
        Whether each entry has dependencies.

    Returns
    -------
    entries : `list` [`str`]
        The entries with ``map_id``, ``sub_map_id`` and ``es_name`` added.
    es_files : `dict` [`str`, `dict`]
        ``es_name`` -> ``{"has_dependencies", "map_id", "order_ids"}``.
    """
    out: list[str] = []
    es_files: dict[str, dict[str, Any]] = {}
    for map_id, start in enumerate(range(0, len(entries), max_events)):
        end = min(start + max_events, len(entries))
        first = first_order_id + start
        es_name = f"{label}:eventservice_{first}^{end - start}"
        es_files[es_name] = {
            "has_dependencies": any(has_dependencies[start:end]),
            "map_id": map_id,
            "order_ids": list(range(first, first_order_id + end)),
        }
        name_json = encode_name(es_name)
        for sub_map_id, entry in enumerate(entries[start:end]):
            out.append(f'{entry[:-1]},"map_id":{map_id},"sub_map_id":{sub_map_id},"es_name":{name_json}}}')
    return out, es_files
