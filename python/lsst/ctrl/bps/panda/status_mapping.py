# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The one table from iDDS and PanDA statuses to `WmsStates`.

``report``, ``get_status`` and ``restart`` all read states through this
module, so ``bps status`` and ``bps report`` never disagree.  Statuses
arrive from the relay as JSON enum dicts (only ``_name_`` and ``_value_``
under ``attributes`` are relied on), as names, or as integer values;
`enum_name` turns any of them into a member name.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_REQUEST_STATES",
    "TERMINAL_REQUEST_STATES",
    "content_state",
    "enum_name",
    "job_state",
    "request_state",
    "transform_state",
]

import logging
from collections.abc import Mapping
from enum import Enum

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

from lsst.ctrl.bps import WmsStates

from .idds_model import REQUEST_TERMINAL, names

_LOG = logging.getLogger(__name__)

_S = WmsStates

# Shared by RequestStatus and TransformStatus (TransformStatus values 0-22
# equal RequestStatus ones; 23 and up differ, so tables go by name).
_COMMON: dict[str, WmsStates] = {
    "New": _S.PENDING,
    "Ready": _S.PENDING,
    "Transforming": _S.RUNNING,
    "Finished": _S.SUCCEEDED,
    "SubFinished": _S.FAILED,  # some jobs failed or were never released
    "Failed": _S.FAILED,
    "Extend": _S.RUNNING,
    "ToCancel": _S.DELETED,
    "Cancelling": _S.DELETED,
    "Cancelled": _S.DELETED,
    "ToSuspend": _S.HELD,
    "Suspending": _S.HELD,
    "Suspended": _S.HELD,
    "ToResume": _S.RUNNING,
    "Resuming": _S.RUNNING,
    "ToExpire": _S.RUNNING,
    "Expiring": _S.RUNNING,
    "Expired": _S.FAILED,
    "ToFinish": _S.RUNNING,
    "ToForceFinish": _S.RUNNING,
    "Terminating": _S.RUNNING,
    "Building": _S.PENDING,
    "Built": _S.PENDING,
    "Throttling": _S.PENDING,
}

_REQUEST: dict[str, WmsStates] = {**_COMMON, "ToClose": _S.RUNNING}

_TRANSFORM: dict[str, WmsStates] = {**_COMMON, "Queue": _S.PENDING, "WaitForTrigger": _S.UNREADY}

_CONTENT: dict[str, WmsStates] = {
    "New": _S.UNREADY,
    "Processing": _S.RUNNING,
    "Available": _S.SUCCEEDED,
    "Failed": _S.FAILED,
    "FinalFailed": _S.FAILED,
    "Lost": _S.PRUNED,
    "Deleted": _S.PRUNED,
    "Mapped": _S.SUCCEEDED,
    "FakeAvailable": _S.SUCCEEDED,
    "Missing": _S.PRUNED,
    "Cancelled": _S.DELETED,
    "Activated": _S.READY,
    "SubAvailable": _S.FAILED,
    "FinalSubAvailable": _S.FAILED,
    "PreProcessing": _S.PENDING,
}

# PanDA job statuses (JobSpec.jobStatus); "transfering" is iDDS's spelling.
_JOB: dict[str, WmsStates] = {
    "pending": _S.UNREADY,
    "defined": _S.PENDING,
    "waiting": _S.PENDING,
    "assigned": _S.PENDING,
    "throttled": _S.PENDING,
    "activated": _S.READY,
    "sent": _S.RUNNING,
    "starting": _S.RUNNING,
    "running": _S.RUNNING,
    "holding": _S.RUNNING,
    "transferring": _S.RUNNING,
    "transfering": _S.RUNNING,
    "merging": _S.SUCCEEDED,
    "finished": _S.SUCCEEDED,
    "failed": _S.FAILED,
    "closed": _S.FAILED,
    "lost": _S.FAILED,
    "broken": _S.FAILED,
    "missing": _S.PRUNED,
    "cancelled": _S.DELETED,
}

TERMINAL_REQUEST_STATES = names(REQUEST_TERMINAL)
"""Request status names after which iDDS does no more work (`frozenset`)."""

ACTIVE_REQUEST_STATES = frozenset(_REQUEST) - TERMINAL_REQUEST_STATES
"""Request status names of a run that is still in progress (`frozenset`)."""


def enum_name(value: object, enum: type[Enum] | None = None) -> str | None:
    """Return the member name of an iDDS enum in any of its wire forms.

    Parameters
    ----------
    value : `object`
        A JSON enum dict (``{"attributes": {"_name_": ..., "_value_": ...}}``),
        an `~enum.Enum` member, a member name, an integer value (needs
        ``enum``), or `None`.
    enum : `type` [`~enum.Enum`], optional
        The enum class used to resolve integer values.

    Returns
    -------
    name : `str` or `None`
        The member name, or `None` if ``value`` is `None` or cannot be
        resolved.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, Mapping):
        attributes = value.get("attributes", value)
        if isinstance(attributes, Mapping):
            name = attributes.get("_name_")
            if isinstance(name, str):
                return name
            return enum_name(attributes.get("_value_"), enum)
        return None
    if isinstance(value, int) and not isinstance(value, bool) and enum is not None:
        try:
            return enum(value).name
        except ValueError:
            _LOG.warning("Value %s is not a member of %s", value, enum.__name__)
    return None


def _lookup(table: Mapping[str, WmsStates], value: object, enum: type[Enum], kind: str) -> WmsStates:
    """Map a status in any wire form through ``table``, UNKNOWN if absent."""
    name = enum_name(value, enum)
    state = table.get(name) if name is not None else None
    if state is None:
        _LOG.warning("Unknown %s status %r; reporting it as UNKNOWN", kind, value)
        return WmsStates.UNKNOWN
    return state


def request_state(name: object) -> WmsStates:
    """Return the run state of an iDDS request status.

    Parameters
    ----------
    name : `object`
        A `RequestStatus` in any form `enum_name` accepts.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The run state; ``UNKNOWN`` (with a warning) for an unknown status.
    """
    return _lookup(_REQUEST, name, RequestStatus, "request")


def transform_state(name: object) -> WmsStates:
    """Return the task state of an iDDS transform status.

    Parameters
    ----------
    name : `object`
        A `TransformStatus` in any form `enum_name` accepts.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The task state; ``UNKNOWN`` (with a warning) for an unknown status.
    """
    return _lookup(_TRANSFORM, name, TransformStatus, "transform")


def content_state(name: object) -> WmsStates:
    """Return the job state of an iDDS content status.

    Parameters
    ----------
    name : `object`
        A `ContentStatus` in any form `enum_name` accepts.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The job state; ``UNKNOWN`` (with a warning) for an unknown status.
    """
    return _lookup(_CONTENT, name, ContentStatus, "content")


def job_state(panda_job_status: str | None) -> WmsStates:
    """Return the job state of a PanDA job status.

    Parameters
    ----------
    panda_job_status : `str` or `None`
        A PanDA ``jobStatus`` such as ``running`` or ``finished``.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The job state; ``UNKNOWN`` (with a warning) for an unknown status.
    """
    state = _JOB.get(panda_job_status.lower()) if panda_job_status else None
    if state is None:
        _LOG.warning("Unknown PanDA job status %r; reporting it as UNKNOWN", panda_job_status)
        return WmsStates.UNKNOWN
    return state
