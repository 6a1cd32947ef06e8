# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Compatibility module: the existing plugin's token functions.

Thin wrappers over `lsst.ctrl.bps.panda.oidc_token` (reading the token) and
the ``panda_auth`` command's implementation in
`lsst.ctrl.bps.panda.cli.panda_auth` (log-in and refresh), for scripts that
import them from here. ``panda_auth_setup``, which returned a panda-client
``OpenIdConnect_Utils`` object, is not provided: use
``pandaclient.openidc_utils`` directly. Errors are this package's
(`lsst.ctrl.bps.panda.panda_exceptions`).
"""

from __future__ import annotations

__all__ = [
    "panda_auth_clean",
    "panda_auth_expiration",
    "panda_auth_refresh",
    "panda_auth_status",
    "panda_auth_update",
]

from typing import Any

from . import oidc_token
from .exceptions import TokenNotFoundError


def panda_auth_clean() -> None:
    """Remove the token and the page-cache files in ``$PANDA_CONFIG_ROOT``."""
    oidc_token.remove_token_files()


def panda_auth_status() -> dict[str, Any] | None:
    """Return the token's claims and where it is, if there is a token.

    Returns
    -------
    status : `dict` [`str`, `~typing.Any`] or `None`
        The claims plus ``filename`` (the file, or where the token comes
        from), or `None` when there is no token.

    Raises
    ------
    lsst.ctrl.bps.panda.panda_exceptions.PandaAuthError
        The token cannot be decoded.
    """
    source = oidc_token.locate_token()
    try:
        claims = oidc_token.source_claims(source)
    except TokenNotFoundError:
        return None
    filename = str(source.path) if source.path is not None else source.description
    return {"filename": filename, **claims}


def panda_auth_expiration() -> int | float:
    """Return the token's ``exp`` (seconds since the epoch), 0 without one.

    Returns
    -------
    expiration : `int` or `float`
        The ``exp`` claim, or 0.
    """
    status = panda_auth_status()
    return status.get("exp", 0) if status else 0


def panda_auth_update(idds_server: str | None = None, reset: bool = False) -> None:
    """Log in through panda-client (device flow when there is no token).

    Parameters
    ----------
    idds_server : `str`, optional
        Ignored: the log-in call goes to the relay, which chooses the iDDS
        server (kept for the existing signature).
    reset : `bool`, optional
        Remove the token files first, as ``panda_auth reset``.

    Raises
    ------
    lsst.ctrl.bps.panda.panda_exceptions.PandaAuthError
        The environment is incomplete or the log-in failed.
    """
    from .cli import panda_auth as command

    if reset:
        command._reset(verbose=False)
        return
    env = command.auth_environment("update")
    failure = command._relay_login(command._import_client(env), env, verbose=False)
    if failure:
        raise command.PandaAuthError(f"The PanDA relay refused the log-in call: {failure}")


def panda_auth_refresh(days: float = 4, verbose: bool = False) -> dict[str, Any] | None:
    """Refresh the token when it expires within ``days`` days.

    Parameters
    ----------
    days : `float`, optional
        Refresh only within this many days of expiry.
    verbose : `bool`, optional
        Show panda-client's messages.

    Returns
    -------
    status : `dict` [`str`, `~typing.Any`] or `None`
        `panda_auth_status` after the refresh.

    Raises
    ------
    lsst.ctrl.bps.panda.panda_exceptions.TokenNotFoundError
        No token file.
    lsst.ctrl.bps.panda.panda_exceptions.TokenExpiredError
        The token has expired (log in again).
    lsst.ctrl.bps.panda.panda_exceptions.TokenTooEarlyError
        More than ``days`` days are left.
    lsst.ctrl.bps.panda.panda_exceptions.PandaAuthError
        Anything else that stopped the refresh.
    """
    from .cli import panda_auth as command

    command._refresh(days, verbose)
    return panda_auth_status()
