# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Read the OIDC token panda-client uses, without importing panda-client.

panda-client (``pandaclient.Client.get_token_string`` and
``pandaclient.openidc_utils``) takes the bearer token, in this order, from
``$PANDA_AUTH_ID_TOKEN`` (the token itself), the file named by
``$OIDC_AUTH_TOKEN_FILE`` (the token itself), ``$OIDC_AUTH_ID_TOKEN`` (the
token itself), and else from its cache file ``$PANDA_CONFIG_ROOT/.token``
(``PANDA_CONFIG_ROOT`` defaults to the current directory), a JSON document
``{"id_token": "<jwt>", "refresh_token": "...", ...}``.  Next to it
panda-client keeps ``.page_cache_<uuid>`` copies of the auth configuration
pages it fetched.

The JWT payload is only base64url-decoded, never verified, exactly as
panda-client does.  Nothing here reads the environment at import time.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MIN_VALID_SECONDS",
    "PAGE_CACHE_PREFIX",
    "TOKEN_BASENAME",
    "TokenSource",
    "auth_config_url",
    "check_token",
    "decode_jwt_claims",
    "expiry",
    "format_time",
    "locate_token",
    "read_token_claims",
    "read_token_document",
    "remove_token_files",
    "source_claims",
    "token_dir",
    "token_files",
    "token_path",
]

import base64
import binascii
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .exceptions import PandaAuthError, TokenExpiredError, TokenNotFoundError

_LOG = logging.getLogger(__name__)

TOKEN_BASENAME = ".token"
"""Name of panda-client's token cache file (``openidc_utils``)."""

PAGE_CACHE_PREFIX = ".page_cache_"
"""Prefix of panda-client's cached auth configuration pages."""

DEFAULT_MIN_VALID_SECONDS = 300.0
"""panda-client refreshes a cached token within 5 minutes of ``exp``."""

_TOKEN_ENV_VARS = ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN")


@dataclass(frozen=True)
class TokenSource:
    """Where the token panda-client would send comes from.

    Parameters
    ----------
    description : `str`
        Human-readable origin, e.g. ``token file /home/u/.token`` or
        ``$PANDA_AUTH_ID_TOKEN``; used in messages.
    path : `pathlib.Path` or `None`
        The file holding the token, if the token lives in a file.
    token : `str` or `None`
        The raw JWT when it comes from an environment variable.
    cached : `bool`
        `True` for panda-client's JSON cache file, which panda-client and
        ``panda_auth`` can refresh; `False` for a token supplied from
        outside.
    """

    description: str
    path: Path | None = None
    token: str | None = None
    cached: bool = False


def token_dir() -> Path:
    """Return the directory where panda-client keeps its token files.

    Returns
    -------
    directory : `pathlib.Path`
        ``$PANDA_CONFIG_ROOT`` with ``~`` expanded, else the current
        directory (panda-client's default ``"."``).
    """
    return Path(os.path.expanduser(os.environ.get("PANDA_CONFIG_ROOT", ".")))


def token_path() -> Path:
    """Return the path of panda-client's token cache file.

    Returns
    -------
    path : `pathlib.Path`
        ``<token_dir()>/.token``; it may not exist.
    """
    return token_dir() / TOKEN_BASENAME


def token_files(directory: Path | None = None) -> list[Path]:
    """List the token files panda-client keeps in a directory.

    Parameters
    ----------
    directory : `pathlib.Path`, optional
        Directory to look in; `token_dir` if not given.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        The ``.token*`` and ``.page_cache_*`` files, sorted; the same
        patterns ``OpenIdConnect_Utils.cleanup`` removes.
    """
    where = token_dir() if directory is None else directory
    if not where.is_dir():
        return []
    found: set[Path] = set()
    for pattern in (TOKEN_BASENAME + "*", PAGE_CACHE_PREFIX + "*"):
        found.update(p for p in where.glob(pattern) if p.is_file() or p.is_symlink())
    return sorted(found)


def remove_token_files(directory: Path | None = None) -> list[Path]:
    """Remove the token files panda-client keeps.

    Parameters
    ----------
    directory : `pathlib.Path`, optional
        Directory to clean; `token_dir` if not given.

    Returns
    -------
    removed : `list` [`pathlib.Path`]
        The files removed.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        A file could not be removed.
    """
    removed = []
    for path in token_files(directory):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise PandaAuthError(f"Cannot remove token file {path}: {exc}") from exc
        _LOG.debug("Removed %s", path)
        removed.append(path)
    return removed


def decode_jwt_claims(token: str, source: str) -> dict[str, Any]:
    """Decode the payload of a JWT without verifying it.

    Parameters
    ----------
    token : `str`
        The JWT, ``header.payload.signature`` (the signature may be empty).
    source : `str`
        Where the token came from, for error messages.

    Returns
    -------
    claims : `dict` [`str`, `~typing.Any`]
        The payload claims.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        The token is not a JWT with a JSON object payload.
    """
    parts = token.strip().split(".")
    if len(parts) < 2 or not parts[1]:
        raise PandaAuthError(f"The ID token in {source} is not a JWT (expected header.payload.signature)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise PandaAuthError(f"The ID token in {source} has an undecodable payload: {exc}") from exc
    if not isinstance(claims, dict):
        raise PandaAuthError(f"The ID token in {source} has a payload that is not a JSON object")
    return claims


def read_token_document(path: Path | None = None) -> dict[str, Any]:
    """Read panda-client's JSON token cache file.

    Parameters
    ----------
    path : `pathlib.Path`, optional
        The file; `token_path` if not given.

    Returns
    -------
    document : `dict` [`str`, `~typing.Any`]
        The file's JSON object; it holds a string ``id_token``.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.TokenNotFoundError
        The file does not exist.
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        The file cannot be read or is not a token document.
    """
    where = token_path() if path is None else path
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TokenNotFoundError(f"No OIDC token file {where}") from exc
    except (OSError, UnicodeError) as exc:
        raise PandaAuthError(f"Cannot read token file {where}: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PandaAuthError(f"Token file {where} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("id_token"), str):
        raise PandaAuthError(f"Token file {where} holds no 'id_token' string")
    return document


def read_token_claims(path: Path | None = None) -> dict[str, Any]:
    """Read and decode the ID token in panda-client's token cache file.

    Parameters
    ----------
    path : `pathlib.Path`, optional
        The file; `token_path` if not given.

    Returns
    -------
    claims : `dict` [`str`, `~typing.Any`]
        The ID token's payload claims.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.TokenNotFoundError
        The file does not exist.
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        The file or its token cannot be decoded (the message names the
        file).
    """
    where = token_path() if path is None else path
    document = read_token_document(where)
    return decode_jwt_claims(document["id_token"], f"token file {where}")


def locate_token() -> TokenSource:
    """Find the token panda-client would use, in panda-client's order.

    Returns
    -------
    source : `TokenSource`
        The first of ``$PANDA_AUTH_ID_TOKEN``, ``$OIDC_AUTH_TOKEN_FILE``,
        ``$OIDC_AUTH_ID_TOKEN`` that is set, else the cache file (which may
        not exist).
    """
    for name in _TOKEN_ENV_VARS:
        value = os.environ.get(name)
        if value is None:
            continue
        if name == "OIDC_AUTH_TOKEN_FILE":
            return TokenSource(f"token file {value} (from $OIDC_AUTH_TOKEN_FILE)", path=Path(value))
        return TokenSource(f"${name}", token=value)
    path = token_path()
    return TokenSource(f"token file {path}", path=path, cached=True)


def source_claims(source: TokenSource) -> dict[str, Any]:
    """Decode the claims of the token a `TokenSource` names.

    Parameters
    ----------
    source : `TokenSource`
        Typically the result of `locate_token`.

    Returns
    -------
    claims : `dict` [`str`, `~typing.Any`]
        The ID token's payload claims.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.TokenNotFoundError
        The token file does not exist.
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        The token cannot be read or decoded.
    """
    if source.cached and source.path is not None:
        return read_token_claims(source.path)
    if source.token is not None:
        return decode_jwt_claims(source.token, source.description)
    assert source.path is not None
    try:
        text = source.path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TokenNotFoundError(f"No OIDC token file {source.path} ($OIDC_AUTH_TOKEN_FILE)") from exc
    except (OSError, UnicodeError) as exc:
        raise PandaAuthError(f"Cannot read {source.description}: {exc}") from exc
    return decode_jwt_claims(text, source.description)


def expiry(claims: dict[str, Any], source: str) -> float:
    """Return the ``exp`` claim of a token.

    Parameters
    ----------
    claims : `dict` [`str`, `~typing.Any`]
        Decoded token claims.
    source : `str`
        Where the token came from, for error messages.

    Returns
    -------
    exp : `float`
        Expiry time, seconds since the epoch.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        ``exp`` is missing or not a number.
    """
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise PandaAuthError(f"The ID token in {source} has no numeric 'exp' claim")
    return float(exp)


def format_time(epoch: float) -> str:
    """Format an epoch time as a UTC date and time.

    Parameters
    ----------
    epoch : `float`
        Seconds since the epoch.

    Returns
    -------
    text : `str`
        E.g. ``2026-12-01 19:30:00 UTC``.
    """
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def check_token(min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS) -> dict[str, Any] | None:
    """Check that the OIDC token panda-client would use is still valid.

    Parameters
    ----------
    min_valid_seconds : `float`, optional
        The token must stay valid at least this long.

    Returns
    -------
    claims : `dict` [`str`, `~typing.Any`] or `None`
        `None` when ``$PANDA_AUTH`` is not ``oidc`` (no token is used),
        else the token's claims.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.TokenNotFoundError
        No token is available.
    lsst.ctrl.bps.panda.exceptions.TokenExpiredError
        The token has expired or expires within ``min_valid_seconds``.
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        The token cannot be decoded.
    """
    if os.environ.get("PANDA_AUTH") != "oidc":
        return None
    source = locate_token()
    claims = source_claims(source)
    exp = expiry(claims, source.description)
    left = exp - time.time()
    hint = "run 'panda_auth refresh' or 'panda_auth reset'" if source.cached else "supply a new token"
    if left <= 0:
        raise TokenExpiredError(f"OIDC token ({source.description}) expired at {format_time(exp)}; {hint}")
    if left < min_valid_seconds:
        raise TokenExpiredError(
            f"OIDC token ({source.description}) expires at {format_time(exp)}, "
            f"in {left:.0f} s (less than {min_valid_seconds:.0f} s); {hint}"
        )
    _LOG.debug("OIDC token from %s valid until %s", source.description, format_time(exp))
    return claims


def auth_config_url(panda_url_ssl: str, vo: str) -> str:
    """Return the URL of a VO's auth configuration, as panda-client does.

    Parameters
    ----------
    panda_url_ssl : `str`
        ``$PANDA_URL_SSL``, e.g. ``https://host:8443/server/panda``.
    vo : `str`
        ``$PANDA_AUTH_VO``.

    Returns
    -------
    url : `str`
        ``<scheme>://<host>[:<port>]/auth/<vo>_auth_config.json``.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        ``panda_url_ssl`` has no scheme or host.
    """
    parsed = urlparse(panda_url_ssl)
    try:
        port = parsed.port
    except ValueError as exc:
        raise PandaAuthError(f"PANDA_URL_SSL={panda_url_ssl!r} has an invalid port") from exc
    if not parsed.scheme or not parsed.hostname:
        raise PandaAuthError(f"PANDA_URL_SSL={panda_url_ssl!r} is not a URL with a scheme and a host")
    host = parsed.hostname if port is None else f"{parsed.hostname}:{port}"
    return f"{parsed.scheme}://{host}/auth/{vo}_auth_config.json"
