# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Bearer-token authentication like the PanDA server's OIDC mode.

The service writes an OIDC-shaped token cache where panda-client reads it
(``$PANDA_CONFIG_ROOT/.token``): an unsigned JWT (``alg: none``) whose
``exp`` lies far in the future. Requests must carry it as
``Authorization: Bearer <id_token>``; the ``name`` claim is the user name
shown in request rows.
"""

from __future__ import annotations

__all__ = ["AUTH_FAILED_PREFIX", "TokenInfo", "ensure_token", "read_token"]

import base64
import getpass
import json
import os
import secrets
import time
from dataclasses import dataclass

from lsst.ctrl.bps.panda.constants import LOCAL_SERVICE_NAME

AUTH_FAILED_PREFIX = "ERROR : Token authentication failed."
"""Start of the body of the server's HTTP 403 reply."""

_LIFETIME = 10 * 365 * 24 * 3600
_MIN_REMAINING = 24 * 3600


@dataclass(frozen=True)
class TokenInfo:
    """The service's token and the identity it carries."""

    id_token: str
    name: str
    subject: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(id_token: str) -> dict:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def make_token(name: str, lifetime: int = _LIFETIME) -> dict[str, str]:
    """Build a token cache document.

    Parameters
    ----------
    name : `str`
        User name (``sub`` and ``name`` claims).
    lifetime : `int`, optional
        Seconds until ``exp``.

    Returns
    -------
    cache : `dict` [`str`, `str`]
        ``{"id_token": <unsigned JWT>, "refresh_token": <random>}``.
    """
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT"}
    claims = {
        "sub": name,
        "name": name,
        "preferred_username": name,
        "iat": now,
        "exp": now + lifetime,
        "iss": LOCAL_SERVICE_NAME,
        "aud": LOCAL_SERVICE_NAME,
        "jti": secrets.token_hex(8),
    }
    id_token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.sig"
    return {"id_token": id_token, "refresh_token": secrets.token_hex(16)}


def read_token(path: str) -> TokenInfo | None:
    """Read a token cache file.

    Parameters
    ----------
    path : `str`
        The ``.token`` file.

    Returns
    -------
    info : `TokenInfo` or `None`
        `None` if absent or unreadable.
    """
    try:
        with open(path) as stream:
            id_token = json.load(stream)["id_token"]
        claims = _claims(id_token)
        return TokenInfo(id_token, str(claims["name"]), str(claims["sub"]), int(claims["exp"]))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def ensure_token(path: str, name: str | None = None) -> TokenInfo:
    """Return the service token, writing a new one (mode 0600) if needed.

    Parameters
    ----------
    path : `str`
        The ``.token`` file.
    name : `str`, optional
        User name for a new token; the login name by default.

    Returns
    -------
    info : `TokenInfo`
        The token in the file.
    """
    info = read_token(path)
    if info is not None and info.expires - time.time() > _MIN_REMAINING:
        return info
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    document = make_token(name or getpass.getuser())
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(document, stream)
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)
    info = read_token(path)
    assert info is not None
    return info
