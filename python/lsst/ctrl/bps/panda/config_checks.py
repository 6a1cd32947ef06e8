# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Configuration checks run by ``bps submit`` before the quantum graph.

ctrl_bps calls ``PanDAService.run_submission_checks`` from
``init_submission`` (``bps submit`` and ``bps prepare`` always ask for it),
before it creates the submit directory or builds the quantum graph. A
missing or invalid plugin key then stops the submission with one line naming
the key and, when the relay is the local service or not set, the overlay to
include.
"""

from __future__ import annotations

__all__ = ["LOCAL_OVERLAY", "check_submission_config", "relay_hint", "relay_is_local_or_unset"]

import ipaddress
import os
import urllib.parse
from typing import Any

from .exceptions import PanDAConfigError, SubmissionCheckError
from .service_settings import ServiceSettings

LOCAL_OVERLAY = "${CTRL_BPS_PANDA_DIR}/config/bps_local.yaml"
"""The local-service site overlay, as a submit file includes it."""

_OVERLAY_KEYS = frozenset({"computeSite", "runnerCommand"})
"""Keys the local overlay sets."""

_ENDPOINT_EXAMPLE = 'fileDistributionEndPoint: "file:///scratch/$USER/dist/{uniqProcName}/"'


def relay_is_local_or_unset(environ: dict[str, str] | None = None) -> bool:
    """Tell whether panda-client would talk to a local service (or nothing).

    Parameters
    ----------
    environ : `dict` [`str`, `str`], optional
        The environment (`os.environ` by default).

    Returns
    -------
    local : `bool`
        `True` when ``PANDA_URL_SSL``/``PANDA_URL`` is unset or names a
        loopback host (``panda-local env`` points there).
    """
    env = os.environ if environ is None else environ
    url = env.get("PANDA_URL_SSL") or env.get("PANDA_URL")
    if not url:
        return True
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def relay_hint() -> str:
    """Return how to reach the local service, when that is the relay.

    Returns
    -------
    hint : `str`
        ``"; ..."`` naming ``panda-local start`` and ``panda-local env``
        when the relay is the local service or unset, else empty.
    """
    if not relay_is_local_or_unset():
        return ""
    return '; for the local PanDA service run: panda-local start; eval "$(panda-local env)"'


def _hint(key: str) -> str:
    if key == "fileDistributionEndPoint":
        return f"; set it in the submit file, e.g. {_ENDPOINT_EXAMPLE}"
    if key in _OVERLAY_KEYS and relay_is_local_or_unset():
        return (
            f"; for the local PanDA service add to the submit file: includeConfigs: [{LOCAL_OVERLAY}] "
            '(eval "$(panda-local env)" sets CTRL_BPS_PANDA_DIR)'
        )
    return ""


def check_submission_config(config: Any) -> ServiceSettings:
    """Read the plugin's settings and turn a bad key into a one-line error.

    Checks ``computeSite``, ``fileDistributionEndPoint``, ``runnerCommand``
    and every other key `ServiceSettings` reads.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The submission's configuration.

    Returns
    -------
    settings : `ServiceSettings`
        The settings read.

    Raises
    ------
    SubmissionCheckError
        Naming the key at fault and how to fix it.
    """
    try:
        return ServiceSettings.from_config(config)
    except PanDAConfigError as exc:
        raise SubmissionCheckError(f"{exc}{_hint(exc.key)}") from exc
