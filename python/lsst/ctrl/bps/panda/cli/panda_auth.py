# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The ``panda_auth`` console script: inspect and manage the OIDC token.

Subcommands:

``status``
    Show the token panda-client would use: where it is, ``iat``, ``exp``,
    name, email, groups and organisation.
``clean``
    Remove the token files panda-client keeps in ``$PANDA_CONFIG_ROOT``.
``reset``
    ``clean``, then make one relay call through panda-client, which has no
    token any more and so starts its device authorization flow.
``refresh [--days N]``
    Refresh the token through panda-client's ``OpenIdConnect_Utils`` when it
    expires within ``N`` days (default 4).

panda-client is imported only inside the commands that talk to a server.
"""

from __future__ import annotations

__all__ = ["main", "panda_auth", "relay_failure"]

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from lsst.daf.butler.cli.cliLog import CliLog
from lsst.daf.butler.cli.opt import (
    log_file_option,
    log_label_option,
    log_level_option,
    log_tty_option,
    long_log_option,
)

from .. import oidc_token
from ..exceptions import (
    AuthConfigError,
    PandaAuthError,
    PanDABpsError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenRefreshError,
    TokenTooEarlyError,
)

_LOG = logging.getLogger(__name__)

_DAY = 86400.0

_EXTERNAL_TOKEN_VARS = ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN")


@dataclass(frozen=True)
class AuthEnvironment:
    """The environment the server-facing subcommands need.

    Parameters
    ----------
    vo : `str`
        ``$PANDA_AUTH_VO`` (or panda-client's fallback ``$OIDC_AUTH_VO``).
    panda_url_ssl : `str`
        ``$PANDA_URL_SSL``, the relay's base URL.
    """

    vo: str
    panda_url_ssl: str

    @property
    def auth_config_url(self) -> str:
        """URL of the VO's auth configuration (`str`)."""
        return oidc_token.auth_config_url(self.panda_url_ssl, self.vo)


def _missing(name: str, command: str, why: str) -> PandaAuthError:
    """Build the error for a missing environment variable."""
    return PandaAuthError(f"panda_auth {command}: environment variable {name} is not set ({why})")


def auth_environment(command: str) -> AuthEnvironment:
    """Read and check the environment a server-facing subcommand needs.

    Parameters
    ----------
    command : `str`
        The subcommand, for messages.

    Returns
    -------
    environment : `AuthEnvironment`
        The checked values.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.PandaAuthError
        A variable is missing or ``PANDA_AUTH`` is not ``oidc``; the message
        names the variable.
    """
    auth = os.environ.get("PANDA_AUTH")
    if not auth:
        raise _missing("PANDA_AUTH", command, "set PANDA_AUTH=oidc to use OIDC tokens")
    if auth != "oidc":
        raise PandaAuthError(
            f"panda_auth {command}: PANDA_AUTH is {auth!r}, but OIDC token commands need PANDA_AUTH=oidc"
        )
    vo = os.environ.get("PANDA_AUTH_VO") or os.environ.get("OIDC_AUTH_VO")
    if not vo:
        raise _missing("PANDA_AUTH_VO", command, "the virtual organisation, e.g. Rubin")
    url = os.environ.get("PANDA_URL_SSL")
    if not url:
        raise _missing("PANDA_URL_SSL", command, "the PanDA server URL, e.g. https://host/server/panda")
    return AuthEnvironment(vo=vo, panda_url_ssl=url)


def _external_token_vars() -> list[str]:
    """Return the set variables that make panda-client ignore the file."""
    return [name for name in _EXTERNAL_TOKEN_VARS if os.environ.get(name) is not None]


def _describe_left(seconds: float) -> str:
    """Describe a time to expiry, e.g. ``in 3 d 4 h`` or ``EXPIRED``."""
    if seconds <= 0:
        return f"EXPIRED {_duration(-seconds)} ago"
    return f"valid for {_duration(seconds)}"


def _duration(seconds: float) -> str:
    """Format a duration as days, hours and minutes."""
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _time_claim(claims: dict[str, Any], name: str) -> str:
    """Format a time claim as the existing tool does (local time), or a
    dash when it is missing.
    """
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return str(datetime.fromtimestamp(value))


def _text_claim(claims: dict[str, Any], *names: str) -> str:
    """Format the first present claim among ``names`` (lists joined by
    commas, as the existing tool does).
    """
    for name in names:
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, list | tuple):
            return ",".join(str(item) for item in value) if value else "-"
        return str(value)
    return "-"


def status_lines(source: oidc_token.TokenSource, claims: dict[str, Any]) -> list[str]:
    """Format a token's status, one field a line.

    The first seven lines have the existing tool's labels and formats
    (cron scripts read them): ``Filename``, ``Valid starting`` (``iat``) and
    ``Expires`` (``exp``) in local time, ``Name``, ``Email``, ``Groups``
    (comma-separated), ``Organization``. Two lines follow: the time left and,
    for a token not read from a file, where it comes from.

    Parameters
    ----------
    source : `lsst.ctrl.bps.panda.oidc_token.TokenSource`
        Where the token came from.
    claims : `dict` [`str`, `~typing.Any`]
        Its decoded claims.

    Returns
    -------
    lines : `list` [`str`]
        The fields, ``f"{label:15} {value}"`` each.
    """
    exp = claims.get("exp")
    left = "-"
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        left = _describe_left(float(exp) - time.time())
    rows = [
        ("Filename:", str(source.path) if source.path is not None else source.description),
        ("Valid starting:", _time_claim(claims, "iat")),
        ("Expires:", _time_claim(claims, "exp")),
        ("Name:", _text_claim(claims, "name")),
        ("Email:", _text_claim(claims, "email")),
        ("Groups:", _text_claim(claims, "groups", "wlcg.groups")),
        ("Organization:", _text_claim(claims, "organisation_name", "organisation")),
        ("Time left:", left),
    ]
    if source.path is None:
        rows.append(("Source:", source.description))
    return [f"{label:15} {value}" for label, value in rows]


def _run(action: Callable[[], None]) -> None:
    """Run a subcommand body, turning plugin errors into one-line errors."""
    try:
        action()
    except PanDABpsError as exc:
        raise click.ClickException(str(exc)) from exc


def _set_verbose(verbose: bool) -> None:
    """Show DEBUG messages of this package and of panda-client."""
    if verbose:
        logging.getLogger("lsst.ctrl.bps.panda").setLevel(logging.DEBUG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@log_level_option(default=["INFO"])
@long_log_option()
@log_file_option()
@log_tty_option()
@log_label_option()
def panda_auth(
    log_level: Any, long_log: bool, log_file: tuple[str, ...], log_tty: bool, log_label: Any
) -> None:  # numpydoc ignore=PR01
    """Inspect and manage the OIDC token panda-client uses for PanDA."""
    # The LSST command-line log options, applied as every LSST command does.
    CliLog.initLog(longlog=long_log, log_tty=log_tty, log_file=log_file, log_label=log_label)
    CliLog.setLogLevels(log_level)


@panda_auth.command()
def status() -> None:
    """Show the token panda-client would use and its claims."""
    _run(_status)


def _status() -> None:
    source = oidc_token.locate_token()
    try:
        claims = oidc_token.source_claims(source)
    except PandaAuthError as exc:  # no token, or one that cannot be decoded
        _no_token([f"Note: {exc}; run 'panda_auth reset' to log in"])
        return
    lines = status_lines(source, claims)
    if source.cached and not _usable(claims):
        why = f"Note: panda-client will not use the token in {source.path}: it expires within 5 minutes"
        _no_token([*lines, f"{why}; run 'panda_auth refresh' or 'panda_auth reset'"])
        return
    for line in lines:
        click.echo(line)
    if os.environ.get("PANDA_AUTH") != "oidc":
        click.echo("Note: PANDA_AUTH is not 'oidc', so panda-client does not send this token", err=True)


def _usable(claims: dict[str, Any]) -> bool:
    """Whether panda-client would send a cached token with these claims."""
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return False
    return exp - time.time() >= oidc_token.DEFAULT_MIN_VALID_SECONDS


def _no_token(details: list[str]) -> None:
    """Answer as the existing tool (``No token found``, exit status 0) when
    there is no token panda-client would use; the details go to stderr.
    """
    click.echo("No token found")
    for line in details:
        click.echo(line, err=True)


@panda_auth.command()
def clean() -> None:
    """Remove the token files panda-client keeps in $PANDA_CONFIG_ROOT."""
    _run(_clean)


def _clean() -> None:
    removed = oidc_token.remove_token_files()
    if not removed:
        click.echo(f"No token files in {oidc_token.token_dir()}")
    for path in removed:
        click.echo(f"Removed {path}")


@panda_auth.command()
@click.option("--verbose", is_flag=True, help="Show panda-client's messages and requests.")
def reset(verbose: bool) -> None:
    """Remove the token files, then log in again (device flow)."""
    _set_verbose(verbose)
    _run(lambda: _reset(verbose))


# Also required by ``reset`` (the existing tool exits 1 without them, and
# cron scripts test that exit status).
_RESET_ALSO_NEEDS = {
    "PANDA_URL": "the PanDA server URL, e.g. https://host/server/panda",
    "PANDA_VERIFY_HOST": "whether to verify the server's host certificate, e.g. on",
}


def _reset(verbose: bool) -> None:
    env = auth_environment("reset")
    for name, why in _RESET_ALSO_NEEDS.items():
        if name not in os.environ:
            raise _missing(name, "reset", why)
    external = _external_token_vars()
    if external:
        raise PandaAuthError(
            f"panda_auth reset: {', '.join(external)} supplies the token, so panda-client would not log in; "
            "unset it first"
        )
    client = _import_client(env)
    _clean()
    failure = _relay_login(client, env, verbose)
    path = oidc_token.token_path()
    claims = oidc_token.read_token_claims(path)
    click.echo("New token obtained.")
    for line in status_lines(oidc_token.TokenSource(f"token file {path}", path=path, cached=True), claims):
        click.echo(line)
    if failure:
        # The existing tool exits 0 here too (cron scripts test it): the new
        # token is stored; the relay's refusal is reported, not fatal.
        click.echo(
            f"Warning: new token stored in {path}, but the PanDA relay call failed: {failure}", err=True
        )


def _import_client(env: AuthEnvironment) -> Any:
    """Import ``pandaclient.Client`` and check it reads this environment."""
    try:
        from pandaclient import Client
    except Exception as exc:  # DNS look-ups run at import unless PANDA_BEHIND_REAL_LB is set.
        raise PandaAuthError(
            f"Cannot import pandaclient.Client: {exc} (set PANDA_BEHIND_REAL_LB when not behind a DNS LB)"
        ) from exc
    if Client.baseURLSSL != env.panda_url_ssl:
        raise PandaAuthError(
            f"pandaclient was imported with PANDA_URL_SSL={Client.baseURLSSL!r}, "
            f"not {env.panda_url_ssl!r}; run panda_auth in a fresh process"
        )
    return Client


def _relay_login(client: Any, env: AuthEnvironment, verbose: bool) -> str | None:
    """Make one relay ``ping`` call; with no token it runs the device flow.

    Returns `None` on success, else why the relay call failed.
    """
    _LOG.debug("Calling ping through %s/relay_idds_command", env.panda_url_ssl)
    try:
        code, output = client.call_idds_command("ping", compress=True, manager=True, verbose=verbose)
    except SystemExit as exc:  # panda-client exits when the device flow fails.
        raise PandaAuthError(
            f"The OIDC device authorization flow with {env.auth_config_url} failed (see messages above)"
        ) from exc
    if not oidc_token.token_path().exists():
        raise PandaAuthError(f"panda-client stored no token in {oidc_token.token_path()}")
    return relay_failure(code, output)


def relay_failure(code: int, output: Any) -> str | None:
    """Unwrap a relay reply; `None` if the relay accepted the call.

    An iDDS-side error (layer 3) still means the token was accepted, so it
    is only logged.

    Parameters
    ----------
    code : `int`
        panda-client's status code of the call (0: the relay answered).
    output : `typing.Any`
        What the call returned.

    Returns
    -------
    failure : `str` or `None`
        Why the relay refused the call, or `None` when it accepted it.
    """
    if code != 0:
        return str(output)
    if not isinstance(output, list | tuple) or len(output) < 2:
        return f"unexpected reply {output!r}"
    if output[0] is not True:
        return str(output[1])
    result = output[1]
    if isinstance(result, list | tuple) and result and result[0] is False:
        _LOG.warning("Token accepted by the relay, but iDDS answered: %s", result[1:])
    return None


@panda_auth.command()
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=4.0,
    show_default=True,
    help="Refresh only when the token expires within this many days.",
)
@click.option("--verbose", is_flag=True, help="Show panda-client's messages and requests.")
def refresh(days: float, verbose: bool) -> None:
    """Refresh the token when it expires within --days days."""
    _set_verbose(verbose)
    _run(lambda: _refresh_reporting(days, verbose))


_REFRESH_PREFIX: tuple[tuple[type[PandaAuthError], str], ...] = (
    (TokenNotFoundError, "[ERROR]"),
    (TokenExpiredError, "[ERROR]"),
    (TokenTooEarlyError, "[INFO]"),
    (PandaAuthError, "[FAIL]"),
)
"""How the existing tool reports each refresh outcome (on stdout, exit 0)."""


def _refresh_reporting(days: float, verbose: bool) -> None:
    """Refresh, reporting token and server problems as the existing tool.

    It prints them with a ``[ERROR]``, ``[INFO]`` or ``[FAIL]`` prefix and
    exits 0 (cron scripts rely on that); a token file that cannot be read
    stops it with status 1, as it did.
    """
    try:
        _refresh(days, verbose)
    except PandaAuthError as exc:
        prefix = next(tag for kind, tag in _REFRESH_PREFIX if isinstance(exc, kind))
        click.echo(f"{prefix} {exc}")


class _UnreadableTokenFileError(PanDABpsError):
    """The token file exists but cannot be decoded (exit status 1)."""


def _read_for_refresh(path: Path) -> tuple[dict[str, Any], float]:
    """Read the token file: its document and the token's ``exp``."""
    try:
        document = oidc_token.read_token_document(path)
        claims = oidc_token.decode_jwt_claims(document["id_token"], f"token file {path}")
        return document, oidc_token.expiry(claims, f"token file {path}")
    except TokenNotFoundError:
        raise
    except PandaAuthError as exc:
        raise _UnreadableTokenFileError(str(exc)) from exc


def _refresh(days: float, verbose: bool) -> None:
    env = auth_environment("refresh")
    path = oidc_token.token_path()
    document, exp = _read_for_refresh(path)
    left = exp - time.time()
    if left <= 0:
        raise TokenExpiredError(
            f"The token in {path} expired at {oidc_token.format_time(exp)}; run 'panda_auth reset' to log in"
        )
    if left > days * _DAY:
        raise TokenTooEarlyError(
            f"The token in {path} is valid until {oidc_token.format_time(exp)} "
            f"({left / _DAY:.1f} days left); it is refreshed only within {days:g} days of expiry (--days)"
        )
    refresh_token = document.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise PandaAuthError(f"Token file {path} holds no refresh_token; run 'panda_auth reset' to log in")
    _refresh_with_panda_client(env, path, refresh_token, verbose)
    _keep_refresh_token(path, refresh_token)
    new_claims = oidc_token.read_token_claims(path)
    new_exp = oidc_token.expiry(new_claims, f"token file {path}")
    click.echo(f"Token in {path} refreshed; it now expires at {oidc_token.format_time(new_exp)}")
    for name in _external_token_vars():
        click.echo(f"Note: {name} is set, so panda-client uses that token, not {path}", err=True)


def _fetch_json(oidc: Any, url: str, what: str) -> dict[str, Any]:
    """Fetch a JSON page through panda-client (cached by it for an hour)."""
    ok, page = oidc.fetch_page(url)
    if not ok:
        raise AuthConfigError(f"Cannot fetch the {what} {url}: {page}")
    if not isinstance(page, dict):
        raise AuthConfigError(f"The {what} {url} is not a JSON object")
    return page


def _refresh_with_panda_client(env: AuthEnvironment, path: Path, refresh_token: str, verbose: bool) -> None:
    """Run panda-client's refresh-token grant; it rewrites ``path``."""
    from pandaclient import openidc_utils

    url = env.auth_config_url
    _LOG.debug("Refreshing the token in %s with the auth configuration %s", path, url)
    oidc = openidc_utils.OpenIdConnect_Utils(
        url, token_dir=str(path.parent), log_stream=_LOG, verbose=verbose
    )
    auth_config = _fetch_json(oidc, url, "auth configuration")
    for key in ("oidc_config_url", "client_id"):
        if not auth_config.get(key):
            raise AuthConfigError(f"The auth configuration {url} has no '{key}'")
    endpoints = _fetch_json(oidc, auth_config["oidc_config_url"], "OIDC endpoint configuration")
    token_endpoint = endpoints.get("token_endpoint")
    if not token_endpoint:
        raise AuthConfigError(
            f"The OIDC configuration {auth_config['oidc_config_url']} has no token_endpoint"
        )
    client_secret = auth_config.get("client_secret") or ""
    ok, detail = oidc.refresh_token(token_endpoint, auth_config["client_id"], client_secret, refresh_token)
    if not ok:
        raise TokenRefreshError(f"Refreshing the token at {token_endpoint} failed: {detail}")


def _keep_refresh_token(path: Path, refresh_token: str) -> None:
    """Keep the old refresh token if the new reply has none; mode 0600.

    panda-client writes the token endpoint's reply as is; an identity
    provider that does not rotate refresh tokens leaves none in it, which
    would make the next refresh impossible.
    """
    document = oidc_token.read_token_document(path)
    if not document.get("refresh_token"):
        document["refresh_token"] = refresh_token
        path.write_text(json.dumps(document), encoding="utf-8")
    try:
        path.chmod(0o600)
    except OSError as exc:
        _LOG.warning("Cannot restrict the permissions of %s: %s", path, exc)


def main() -> None:
    """Run the ``panda_auth`` console script."""
    panda_auth(prog_name="panda_auth")
