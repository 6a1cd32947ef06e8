# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Which iDDS request a run id or submit directory names, on which service.

`resolve_run` is the run lookup of every command (``bps report``,
``status``, ``cancel``, ``restart``): it turns a request id or a submit
directory into a `RunRef`.

Request ids are numbers per server: the same submit directory read with
``PANDA_URL`` pointing at another service would name an unrelated request.
The submit record keeps the relay URL the run was sent to and the request
name; `check_relay` refuses a directory whose run was sent elsewhere, and
`check_request_name` one whose request on the server has another name (a
service whose state was reset hands out the same ids again).

A client killed after the server created the request but before it wrote
the id leaves only the submission intent (`SubmitRecord.record_intent`);
`recover_request_id` then finds the run by its request name, which is
unique per submit, and completes the record.
"""

from __future__ import annotations

__all__ = [
    "MAX_REQUEST_ID",
    "RunRef",
    "check_relay",
    "check_request_name",
    "indexed_record",
    "recover_request_id",
    "resolve_run",
    "same_relay",
]

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .exceptions import PanDABpsError, RunMismatchError
from .submit_record import SubmitRecord, current_relay_url, find_submit_dir

if TYPE_CHECKING:
    from .idds_transport import IDDSTransport

_LOG = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _canonical(url: str) -> tuple[str, str, int | None, str]:
    """Return the parts of a relay URL that tell services apart."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme), parts.path.rstrip("/")


def same_relay(first: str, second: str) -> bool:
    """Tell whether two relay URLs name the same service.

    Parameters
    ----------
    first, second : `str`
        Relay URLs (``PANDA_URL_SSL`` values).

    Returns
    -------
    same : `bool`
        Equal up to the case of scheme and host, a default port and a
        trailing ``/``.
    """
    return _canonical(first) == _canonical(second)


def check_relay(record: SubmitRecord, given: str) -> None:
    """Refuse a submit directory whose run was sent to another service.

    Parameters
    ----------
    record : `SubmitRecord`
        The directory's record.
    given : `str`
        The id as the user gave it, for the message.

    Raises
    ------
    RunMismatchError
        If the record names a relay and the current ``PANDA_URL_SSL`` (or
        ``PANDA_URL``) is set to another one.
    """
    current = current_relay_url()
    if not record.relay_url or not current or same_relay(record.relay_url, current):
        return
    what = f"request {record.run_id}" if record.run_id is not None else "its request"
    raise RunMismatchError(
        f"The run in '{given}' ({record.run_name}) was submitted to {record.relay_url}, but "
        f"PANDA_URL_SSL/PANDA_URL now point at {current}; refusing to act on {what} there, which "
        f"would be another run. Point PANDA_URL and PANDA_URL_SSL at {record.relay_url} "
        '(for a local service: eval "$(panda-local env --state-dir <its state dir>)")'
    )


def check_request_name(record: SubmitRecord | None, given: str, head: Mapping[str, Any]) -> None:
    """Refuse a server request whose name is not the recorded one.

    Parameters
    ----------
    record : `SubmitRecord` or `None`
        The record of the submit directory the user named; `None` (a run
        named by request id) checks nothing.
    given : `str`
        The id as the user gave it, for the message.
    head : `~collections.abc.Mapping`
        The request row the server returned for the recorded id.

    Raises
    ------
    RunMismatchError
        If the row carries a name other than the recorded request name.
    """
    if record is None or not record.request_name:
        return
    name = head.get("name")
    if name is None or str(name) == record.request_name:
        return
    raise RunMismatchError(
        f"The run in '{given}' is request {record.run_id} named {record.request_name!r}, but request "
        f"{record.run_id} of {current_relay_url()} is named {name!r}: another run (was the service "
        "reset or replaced?); refusing to act on it"
    )


def recover_request_id(transport: IDDSTransport, record: SubmitRecord, given: str) -> int:
    """Find the request of a run whose submitting client died, by name.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    record : `SubmitRecord`
        A record with a submission intent and no request id; completed
        (id written, run index updated) when the run is found.
    given : `str`
        The id as the user gave it, for messages.

    Returns
    -------
    request_id : `int`
        The request id.

    Raises
    ------
    PanDABpsError
        If no request, or more than one, has the run's request name.
    IDDSRequestError
        If the relay or iDDS fails.
    """
    name = record.name_on_server
    rows = transport.get_requests()
    found = sorted(
        {int(row["request_id"]) for row in rows if row.get("name") == name and row.get("request_id")}
    )
    about = f"The run in '{given}' ({record.run_name})"
    if not found:
        raise PanDABpsError(
            f"{about} was being submitted at {record.submit_started} but {record.relay_url} has no request "
            f"named {name!r}: the submission never reached the service (or was refused); submit it again"
        )
    if len(found) > 1:
        ids = ", ".join(map(str, found))
        raise PanDABpsError(f"{about}: several requests are named {name!r} ({ids}); give the id instead")
    record.run_id = found[0]
    _LOG.warning(
        "%s: the submitting client stopped before recording the request id; found request %d by its "
        "name %r and recorded it",
        about,
        found[0],
        name,
    )
    try:
        record.write()
        record.register()
    except OSError as exc:
        _LOG.warning("Could not complete the submit record in %s: %s", record.submit_path, exc)
    return found[0]


@dataclasses.dataclass(frozen=True, slots=True)
class RunRef:
    """A run named by the user, resolved to its request id.

    Parameters
    ----------
    given : `str`
        The id as given (request id or submit directory).
    request_id : `int`
        The iDDS request id.
    record : `SubmitRecord` or `None`
        The run's submit record, if one was found.
    """

    given: str
    request_id: int
    record: SubmitRecord | None


MAX_REQUEST_ID = 2**63 - 1
"""Largest request id (a signed 64-bit integer in iDDS' and the local
service's databases)."""


def resolve_run(wms_id: str | int, transport: IDDSTransport | None = None) -> RunRef:
    """Resolve a request id or a submit directory.

    Parameters
    ----------
    wms_id : `str` or `int`
        An iDDS request id, or a submit directory holding
        ``panda_submit_record.json``.
    transport : `IDDSTransport`, optional
        How to reach iDDS; with it, a run whose submitting client died
        before recording the request id is found by its request name
        (`recover_request_id`).

    Returns
    -------
    ref : `RunRef`
        The request id, with the submit record when one is found (for a
        request id through the run index).

    Raises
    ------
    PanDABpsError
        If the id is blank, a number larger than `MAX_REQUEST_ID`, or neither
        a request id nor a submitted run's directory, or if the directory's
        run was sent to another relay than the one ``PANDA_URL_SSL`` names
        now.
    """
    given = str(wms_id).strip()
    if not given:
        raise PanDABpsError(f"Run id {str(wms_id)!r} is blank: give an iDDS request id or a submit directory")
    if given.isascii() and given.isdigit():
        request_id = int(given)
        if request_id > MAX_REQUEST_ID:
            raise PanDABpsError(f"'{given}' is not an iDDS request id: ids are at most {MAX_REQUEST_ID}")
        return RunRef(given, request_id, indexed_record(request_id))
    if not Path(given).is_dir():
        raise PanDABpsError(f"'{given}' is neither an iDDS request id nor a submit directory")
    record = SubmitRecord.read(given)
    check_relay(record, given)
    if record.run_id is not None:
        return RunRef(given, int(record.run_id), record)
    if record.submit_started is None or transport is None:
        raise PanDABpsError(f"The run in '{given}' ({record.run_name}) has not been submitted")
    return RunRef(given, recover_request_id(transport, record, given), record)


def indexed_record(request_id: int) -> SubmitRecord | None:
    """Return the submit record the run index names for a request id.

    Parameters
    ----------
    request_id : `int`
        The iDDS request id.

    Returns
    -------
    record : `SubmitRecord` or `None`
        The record of that run, `None` if the index names none or its
        record is unreadable or names another request.
    """
    submit_dir = find_submit_dir(request_id)
    if submit_dir is None:
        return None
    try:
        record = SubmitRecord.read(submit_dir)
    except PanDABpsError as exc:
        _LOG.warning("Ignoring the submit record of request %s: %s", request_id, exc)
        return None
    return record if record.run_id == request_id else None
