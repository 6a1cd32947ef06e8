# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""JSON forms used on the wire: iDDS enum dicts, dates, reply bodies."""

from __future__ import annotations

__all__ = ["enum_dict", "format_date", "format_period", "relay_reply"]

import json
import time
from enum import Enum
from typing import Any

from lsst.ctrl.bps.panda.idds_model import DATE_FORMAT

_ENUM_CACHE: dict[Enum, dict[str, Any]] = {}


def enum_dict(member: Enum | None) -> dict[str, Any] | None:
    """Encode an iDDS enum member as the iDDS server does.

    Parameters
    ----------
    member : `enum.Enum` or `None`
        The member, e.g. ``RequestStatus.Transforming``.

    Returns
    -------
    encoded : `dict` or `None`
        ``{"class", "module", "attributes": {"_value_", "_name_",
        "_sort_order_", "_loading"}}``; `None` for `None`.
    """
    if member is None:
        return None
    cached = _ENUM_CACHE.get(member)
    if cached is None:
        cached = {
            "class": type(member).__name__,
            "module": type(member).__module__,
            "attributes": {
                "_value_": member.value,
                "_name_": member.name,
                "_sort_order_": getattr(member, "_sort_order_", member.value),
                "_loading": False,
            },
        }
        _ENUM_CACHE[member] = cached
    return cached


def format_date(epoch: float | None) -> str | None:
    """Format a UTC epoch time like iDDS (``Sun, 22 Nov 2026 11:09:10 UTC``).

    Parameters
    ----------
    epoch : `float` or `None`
        Seconds since the epoch.

    Returns
    -------
    text : `str` or `None`
        The formatted date, `None` for `None`.
    """
    if epoch is None:
        return None
    return time.strftime(DATE_FORMAT, time.gmtime(epoch))


def format_period(seconds: int) -> str:
    """Format a poll period like Python's `datetime.timedelta` (``0:00:05``).

    Parameters
    ----------
    seconds : `int`
        The period.

    Returns
    -------
    text : `str`
        ``H:MM:SS``.
    """
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def relay_reply(ok: bool, payload: Any) -> str:
    """Serialise a relay reply: ``[true, payload]`` or ``[false, message]``.

    Parameters
    ----------
    ok : `bool`
        The relay flag (`False` only for relay-side errors).
    payload : `typing.Any`
        JSON-compatible result; enums must already be encoded.

    Returns
    -------
    body : `str`
        The ``text/plain`` body.
    """
    return json.dumps([ok, payload])
