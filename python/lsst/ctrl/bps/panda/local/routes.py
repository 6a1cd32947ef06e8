# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Paths of the service's own HTTP routes (standard library only).

Kept apart from `.app` so that the command line can call them without
importing the web framework, the database layer or idds.
"""

from __future__ import annotations

__all__ = ["API_PATH", "MONITOR_PATH", "STATUS_PATH", "TOKEN_COOKIE"]

STATUS_PATH = "/panda-local/status"
"""Unauthenticated liveness/status route used by ``panda-local status``."""

API_PATH = "/panda-local/api"
"""Prefix of the token-protected JSON routes (``panda-local jobs|watch``)."""

MONITOR_PATH = "/panda-local/monitor"
"""The monitor page (``panda-local monitor`` prints its URL)."""

TOKEN_COOKIE = "panda_local_token"
"""Cookie set for a browser that opened the monitor URL with its token."""
