# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Run control for `PanDAService`: status, list, cancel, restart, ping.

Runs are named by iDDS request id or submit directory (see
`run_lookup.resolve_run`).  Every failure comes back as the return value
ctrl_bps expects, with a message naming the run and the cause; errors of
the transport (`IDDSRequestError`, `PanDAUnreachableError`) never escape
except from `submission_checks`, whose job is to raise them.

``ping`` exit statuses: 0 usable; 1 OIDC token missing, expired or about to
expire; 2 relay unreachable; 3 relay or iDDS refused the caller
(authentication); 4 any other refusal or an unexpected reply.
"""

from __future__ import annotations

__all__ = [
    "PING_AUTH_FAILED",
    "PING_REFUSED",
    "PING_TOKEN_PROBLEM",
    "PING_UNREACHABLE",
    "TOKEN_MIN_VALID_SECONDS",
    "cancel",
    "get_status",
    "list_submitted",
    "ping",
    "restart",
    "submission_checks",
]

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lsst.ctrl.bps import WmsStates

from .exceptions import (
    IDDSRequestError,
    PandaAuthError,
    PanDABpsError,
    PanDAConfigError,
    PanDAUnreachableError,
    RunMismatchError,
)
from .idds_model import REQUEST_FINAL, names
from .oidc_token import check_token
from .reporting import request_status_name
from .run_lookup import RunRef, check_request_name, resolve_run
from .status_mapping import ACTIVE_REQUEST_STATES, request_state

if TYPE_CHECKING:
    from .idds_transport import IDDSTransport

_LOG = logging.getLogger(__name__)

TOKEN_MIN_VALID_SECONDS = 600.0
"""An OIDC token closer than this to expiry is reported as about to expire."""

PING_TOKEN_PROBLEM = 1
PING_UNREACHABLE = 2
PING_AUTH_FAILED = 3
PING_REFUSED = 4

# Words of relay / iDDS messages that mean the caller was not accepted.
_AUTH_HINTS = (
    "not allowed",
    "authentication",
    "ssl secure connection is required",
    "credentials",
    "token",
    "permission",
    "unauthorized",
    "forbidden",
)

# Errors of the transport (relay, iDDS, client set-up); other package errors
# come from the id itself and are reported as they are.
_SERVICE_ERRORS = (IDDSRequestError, PandaAuthError, PanDAConfigError)

# Request statuses after which a cancel has nothing left to stop: the final
# ones (a suspended request still holds work a cancel can stop).
_CANCEL_POINTLESS = names(REQUEST_FINAL)


def _head(transport: IDDSTransport, ref: RunRef) -> dict[str, Any] | None:
    """Return the request row of a run (no detail), `None` if unknown.

    Raises `RunMismatchError` if a submit directory's request on the server
    has another name than the recorded one (`run_lookup.check_request_name`).
    """
    rows = transport.get_requests(ref.request_id)
    if not rows:
        return None
    check_request_name(ref.record if not ref.given.isdigit() else None, ref.given, rows[0])
    return dict(rows[0])


def _unknown(ref: RunRef) -> str:
    """Message for a run the server does not know."""
    return f"No run found for id '{ref.given}' (iDDS request {ref.request_id} is unknown to the server)"


def get_status(transport: IDDSTransport, wms_id: str) -> tuple[WmsStates, str]:
    """Return the state of a run, cheaply (no detail query).

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    wms_id : `str`
        Request id or submit directory.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The run state (same table as ``report``); ``UNKNOWN`` on failure.
    message : `str`
        Why the state is UNKNOWN, else empty.
    """
    try:
        ref = resolve_run(wms_id, transport)
        head = _head(transport, ref)
    except _SERVICE_ERRORS as exc:
        return WmsStates.UNKNOWN, f"Cannot get the status of run '{wms_id}': {exc}"
    except PanDABpsError as exc:
        return WmsStates.UNKNOWN, str(exc)
    if head is None:
        return WmsStates.UNKNOWN, _unknown(ref)
    state = request_state(head.get("status"))
    if state is WmsStates.UNKNOWN:
        return state, f"Run '{wms_id}' has an unknown iDDS status {request_status_name(head)!r}"
    return state, ""


def list_submitted(transport: IDDSTransport, wms_id: str | None, user: str | None) -> list[str]:
    """Return request ids of runs to act on (``bps cancel``).

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    wms_id : `str` or `None`
        A request id or submit directory.
    user : `str` or `None`
        Without an id: the active runs of this iDDS user name.

    Returns
    -------
    ids : `list` [`str`]
        Matching request ids; empty with neither id nor user.  With an id
        whose lookup fails on the server, the id itself (so that the
        caller's next command reports the failure).
    """
    if wms_id is not None:  # a blank id is refused by resolve_run, never "every run"
        return _list_one(transport, str(wms_id))
    if not user:
        _LOG.warning("Neither a run id nor a user given: no runs selected")
        return []
    try:
        rows = transport.get_requests()
    except PanDABpsError as exc:
        _LOG.error("Cannot list the runs of user %s: %s", user, exc)
        return []
    return [
        str(row["request_id"])
        for row in rows
        if row.get("request_id") is not None
        and str(row.get("username") or "").casefold() == user.casefold()
        and request_status_name(row) in ACTIVE_REQUEST_STATES
    ]


def _list_one(transport: IDDSTransport, wms_id: str) -> list[str]:
    """Ids matching one run id or submit directory."""
    try:
        ref = resolve_run(wms_id, transport)
    except PanDABpsError as exc:
        _LOG.error("%s", exc)
        return []
    try:
        head = _head(transport, ref)
    except RunMismatchError as exc:
        _LOG.error("%s", exc)
        return []
    except PanDABpsError as exc:
        _LOG.warning("Cannot look up run '%s': %s", wms_id, exc)
        return [str(ref.request_id)]
    return [str(ref.request_id)] if head is not None else []


def cancel(transport: IDDSTransport, wms_id: str) -> tuple[bool, str]:
    """Abort a run.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    wms_id : `str`
        Request id or submit directory.

    Returns
    -------
    cancelled : `bool`
        Whether iDDS accepted the abort.
    message : `str`
        What happened, or why nothing was done.
    """
    try:
        ref = resolve_run(wms_id, transport)
        head = _head(transport, ref)
        if head is None:
            return False, _unknown(ref)
        status = request_status_name(head)
        if status in _CANCEL_POINTLESS:
            return False, f"Run '{wms_id}' (request {ref.request_id}) has already ended ({status})"
        result = transport.abort(ref.request_id)
    except _SERVICE_ERRORS as exc:
        return False, f"Cannot cancel run '{wms_id}': {exc}"
    except PanDABpsError as exc:
        return False, str(exc)
    return True, f"Abort of request {ref.request_id} registered: {result}"


def restart(transport: IDDSTransport, wms_id: str) -> tuple[str | None, str | None, str | None]:
    """Retry the failed jobs of a terminated run, in place.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.
    wms_id : `str`
        Request id or submit directory.

    Returns
    -------
    run_id : `str` or `None`
        The request id (unchanged by a retry), `None` if refused.
    run_name : `str` or `None`
        The run name, `None` if refused.
    message : `str` or `None`
        What happened, or why the restart was refused.
    """
    try:
        ref = resolve_run(wms_id, transport)
        head = _head(transport, ref)
        if head is None:
            return None, None, _unknown(ref)
        refusal = _restart_refusal(wms_id, ref, head)
        if refusal:
            return None, None, refusal
        result = transport.retry(ref.request_id)
    except _SERVICE_ERRORS as exc:
        return None, None, f"Cannot restart run '{wms_id}': {exc}"
    except PanDABpsError as exc:
        return None, None, str(exc)
    name = ref.record.run_name if ref.record is not None else head.get("name")
    return str(ref.request_id), name, f"Retry of request {ref.request_id} registered: {result}"


def _restart_refusal(wms_id: str, ref: RunRef, head: Mapping[str, Any]) -> str | None:
    """Why a run cannot be restarted, `None` if it can."""
    status = request_status_name(head)
    about = f"Run '{wms_id}' (request {ref.request_id})"
    if status == "Finished":
        return f"{about} completed successfully; there is nothing to restart"
    if status in ACTIVE_REQUEST_STATES:
        return f"{about} is still running ({status}); restart it once it has ended"
    if status is None or request_state(status) is WmsStates.UNKNOWN:
        return f"{about} has an unknown status {status!r}; not restarting it"
    return None


def _check_token() -> None:
    """Check the OIDC token when ``PANDA_AUTH=oidc`` (no-op otherwise).

    Raises
    ------
    PandaAuthError
        If the token is missing, unreadable, expired or about to expire.
    """
    claims = check_token(TOKEN_MIN_VALID_SECONDS)
    if claims is not None:
        _LOG.debug("OIDC token of %s is valid", claims.get("name") or claims.get("sub"))


def _is_auth_failure(exc: IDDSRequestError) -> bool:
    """Whether a refusal reads like an authentication failure."""
    detail = str(exc.detail).lower()
    return any(hint in detail for hint in _AUTH_HINTS)


def ping(transport: IDDSTransport) -> tuple[int, str | None]:
    """Check the relay is reachable and authentication works.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.

    Returns
    -------
    status : `int`
        0 if usable, else one of the ``PING_*`` codes.
    message : `str` or `None`
        What failed, `None` on success.
    """
    try:
        _check_token()
    except PandaAuthError as exc:
        return PING_TOKEN_PROBLEM, f"OIDC token problem: {exc}"
    try:
        _ping_relay(transport)
    except PandaAuthError as exc:
        return PING_AUTH_FAILED, str(exc)
    except PanDAUnreachableError as exc:
        return PING_UNREACHABLE, f"Error pinging the PanDA service: {exc}"
    except PanDABpsError as exc:
        return PING_REFUSED, f"Error pinging the PanDA service: {exc}"
    return 0, None


def submission_checks(transport: IDDSTransport) -> None:
    """Check the service is usable before a submission.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach iDDS.

    Raises
    ------
    PandaAuthError
        If the OIDC token is missing, expired or about to expire, or the
        relay or iDDS rejects the caller.
    PanDAUnreachableError
        If the relay cannot be reached.
    IDDSRequestError
        If the relay or iDDS fails the ping otherwise.
    """
    _check_token()
    _ping_relay(transport)


def _ping_relay(transport: IDDSTransport) -> None:
    """Ping the relay and iDDS through the transport.

    Raises
    ------
    PandaAuthError
        If the relay or iDDS rejects the caller.
    IDDSRequestError
        If the ping fails otherwise (`PanDAUnreachableError` if the relay
        cannot be reached).
    """
    try:
        result = transport.ping()
    except PanDAUnreachableError:
        raise
    except IDDSRequestError as exc:
        if _is_auth_failure(exc):
            raise PandaAuthError(f"PanDA authentication failed: {exc.detail}") from exc
        raise
    if not isinstance(result, Mapping) or str(result.get("Status", "")).upper() != "OK":
        raise IDDSRequestError("ping", None, f"unexpected reply {result!r}")
