# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Talk to iDDS through the PanDA relay (panda-client's iDDS API).

This is the only module of the plugin that imports ``pandaclient``, and it
does so lazily, inside the first call, never at import time.

Every reply goes through `unwrap_reply`, which peels the three envelope
layers once (see ``doc/wire-protocol.md`` §5):

1. the HTTP layer: ``(255, text)`` is a transport failure; connection
   refused/reset, timeouts, name-resolution failures and HTTP 5xx gateway
   texts raise `PanDAUnreachableError`, anything else (an HTTP 403 token
   failure, TLS credential set-up, a non-JSON body) `IDDSRequestError`;
2. the relay flag: ``[false, message]`` (unknown command, no identity,
   relay-side exception) raises `IDDSRequestError`;
3. the ClientManager result: ``[false, message]`` raises `IDDSRequestError`;
   for ``abort``/``retry``/``close``/``abort_task`` the result is a list of
   ``[code, {"status", "message"}]`` pairs and any non-zero code raises
   `IDDSRequestError` with the server's message (e.g. ``No match requests``).

Read-only commands (``ping``, ``get_requests``, ``get_contents_output_ext``)
are retried on `PanDAUnreachableError` with bounded exponential backoff and
jitter (`RetryPolicy`); ``submit``, ``abort`` and ``retry`` are never retried,
so a lost reply can never create a second request.

Environment, checked at each call (not at construction):

* ``PANDA_URL`` and ``PANDA_URL_SSL`` must be set (`PanDAConfigError` naming
  the missing variable otherwise). panda-client reads them only when
  ``pandaclient.Client`` is first imported; the transport re-applies the
  current values to that module before every call.
* ``PANDA_AUTH=oidc`` needs ``PANDA_AUTH_VO`` (or ``OIDC_AUTH_VO``):
  checked here, because panda-client would ``sys.exit(255)`` instead.
* DNS rule: unless ``PANDA_BEHIND_REAL_LB`` is already set, panda-client
  resolves the cache host when ``pandaclient.Client`` is imported and
  replaces the relay host by a random DNS alias on every request. Before
  importing or calling panda-client the transport sets
  ``PANDA_BEHIND_REAL_LB=1`` in `os.environ` (process wide) when the host of
  ``PANDA_URL_SSL`` or ``PANDA_URL`` is a loopback name or address
  (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``) or any IP
  literal (no DNS load spreading is possible for an address), or when
  ``CTRL_BPS_PANDA_NO_DNS_LB`` is set to a non-empty value other than ``0``
  (opt-in for hosts behind a real load balancer). For other host names the
  DNS load spreading of panda-client, which CERN-style PanDA servers rely
  on, is left as is.
* panda-client prints ``No valid grid proxy certificate found`` (and
  tracebacks) to standard output; output printed during a call is captured
  and logged at DEBUG level instead.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_COMMANDS",
    "NO_DNS_LB_ENV",
    "READ_ONLY_COMMANDS",
    "IDDSTransport",
    "PanDARelayTransport",
    "RetryPolicy",
    "cache_url",
    "is_unreachable_text",
    "transport_from_config",
    "unwrap_reply",
]

import contextvars
import io
import ipaddress
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from . import request_gzip
from .constants import CACHE_SIZE_LIMIT
from .exceptions import (
    CacheUploadError,
    IDDSRequestError,
    PandaAuthError,
    PanDAConfigError,
    PanDAUnreachableError,
    RelayTimeoutError,
)
from .service_settings import RELAY_TIMEOUT_KEYS, RelayTimeouts, relay_timeouts

if TYPE_CHECKING:  # idds is imported by the encoder, not by every command
    from .request_encoding import EncodedRequest

_LOG = logging.getLogger(__name__)

NO_DNS_LB_ENV = "CTRL_BPS_PANDA_NO_DNS_LB"
"""Opt-in: set ``PANDA_BEHIND_REAL_LB=1`` for any relay host."""

CONTROL_COMMANDS = frozenset({"abort", "retry", "close", "abort_task"})
"""ClientManager commands answering ``[[code, {status, message}], ...]``."""

READ_ONLY_COMMANDS = frozenset({"ping", "get_requests", "get_contents_output_ext"})
"""Commands that are safe to repeat after a transport failure."""

_LOG_LIMIT = 1000
"""Characters of a raw reply shown in DEBUG logs and error messages."""

_UNREACHABLE = re.compile(
    r"connection refused|connection reset|connection aborted|broken pipe|timed out|timeout"
    r"|name or service not known|temporary failure in name resolution|nodename nor servname"
    r"|network is unreachable|no route to host|server disconnected|remote end closed"
    r"|internal server error|bad gateway|service unavailable|gateway time-?out"
    r"|\b50[0234]\s+[a-z]",
    re.IGNORECASE,
)
"""Texts of ``(255, text)`` replies that mean "relay not reachable now"."""

_API_LOCK = threading.Lock()
"""Guards the module-global settings of ``pandaclient.idds_api``."""


class IDDSTransport(Protocol):
    """How the plugin reaches iDDS (an implementation may be a fake)."""

    def ping(self) -> dict[str, Any]:
        """Return ``{"Status": "OK"}`` or raise."""
        ...

    def submit(self, request: EncodedRequest, *, request_cache: str) -> int:
        """Submit an encoded request and return its request id."""
        ...

    def get_requests(self, request_id: int | None = None, with_detail: bool = False) -> list[dict[str, Any]]:
        """Return the request rows."""
        ...

    def abort(self, request_id: int) -> str:
        """Abort a request; return the server's message."""
        ...

    def retry(self, request_id: int) -> str:
        """Retry the failed jobs of a request; return the server's message."""
        ...

    def get_contents_output_ext(
        self, request_id: int, workload_id: int | None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return per-job output rows by transform id."""
        ...

    def put_cache_file(self, path: str) -> str:
        """Upload a file to the PanDA cache; return its download URL."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for read-only commands.

    Parameters
    ----------
    attempts : `int`
        Total number of tries (1: no retry).
    base_delay : `float`
        Seconds before the second try; doubled for each further try.
    max_delay : `float`
        Upper bound of one delay, in seconds.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """Return the pause after failed try number ``attempt``.

        Parameters
        ----------
        attempt : `int`
            Number of the try that failed, from 1.

        Returns
        -------
        delay : `float`
            Seconds: ``min(max_delay, base_delay * 2**(attempt-1))`` scaled
            by a random factor in [0.5, 1].
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


def _truncate(value: Any, limit: int = _LOG_LIMIT) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text)} chars]"


def is_unreachable_text(text: str) -> bool:
    """Tell whether a ``(255, text)`` reply means a transient failure.

    Parameters
    ----------
    text : `str`
        The text panda-client returned with status 255.

    Returns
    -------
    unreachable : `bool`
        `True` for connection errors, timeouts, name-resolution failures
        and HTTP 5xx gateway/server-error texts.
    """
    return _UNREACHABLE.search(text) is not None


def _status_error(operation: str, request_id: int | None, status: Any, payload: Any) -> IDDSRequestError:
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
    text = text.strip() or f"empty reply with status {status}"
    if text.startswith(_TIMEOUT_PREFIX):
        return RelayTimeoutError(operation, request_id, text)
    if is_unreachable_text(text):
        return PanDAUnreachableError(operation, request_id, f"PanDA relay unreachable: {_truncate(text)}")
    return IDDSRequestError(operation, request_id, _truncate(text))


def _relay_result(operation: str, request_id: int | None, payload: Any) -> Any:
    if not isinstance(payload, list | tuple) or not payload or not isinstance(payload[0], bool):
        raise IDDSRequestError(operation, request_id, f"unexpected relay reply {_truncate(payload)}")
    if payload[0] is False:
        message = payload[1] if len(payload) > 1 else "relay refused the command without a message"
        raise IDDSRequestError(operation, request_id, _truncate(str(message)))
    if len(payload) != 2:
        raise IDDSRequestError(operation, request_id, f"unexpected relay reply {_truncate(payload)}")
    return payload[1]


def _control_result(operation: str, request_id: int | None, result: Any) -> list[Any]:
    if not isinstance(result, list) or not result:
        raise IDDSRequestError(operation, request_id, f"unexpected reply {_truncate(result)}")
    for item in result:
        ok_shape = isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], dict)
        if not ok_shape:
            raise IDDSRequestError(operation, request_id, f"unexpected reply {_truncate(result)}")
        code, info = item
        if code != 0:
            message = info.get("message") or f"status {info.get('status', code)}"
            raise IDDSRequestError(operation, request_id, _truncate(str(message)))
    return result


def unwrap_reply(operation: str, request_id: int | None, reply: Any) -> Any:
    """Peel the three envelope layers of a relay reply.

    Parameters
    ----------
    operation : `str`
        The ClientManager command the reply answers.
    request_id : `int` or `None`
        The request the command was about (for error messages).
    reply : `tuple`
        ``(status, payload)`` as returned by panda-client's iDDS API.

    Returns
    -------
    result : `typing.Any`
        The ClientManager result; for `CONTROL_COMMANDS` the list of
        ``[0, {"status": 0, "message": ...}]`` pairs.

    Raises
    ------
    PanDAUnreachableError
        Connection refused, timeout or HTTP 5xx (layer 1).
    IDDSRequestError
        Any other failure of any layer, with the server's message.
    """
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise IDDSRequestError(operation, request_id, f"unexpected client reply {_truncate(reply)}")
    status, payload = reply
    if status != 0:
        raise _status_error(operation, request_id, status, payload)
    result = _relay_result(operation, request_id, payload)
    if isinstance(result, list) and len(result) == 2 and result[0] is False:
        raise IDDSRequestError(operation, request_id, _truncate(str(result[1])))
    if operation in CONTROL_COMMANDS:
        return _control_result(operation, request_id, result)
    return result


class _StdoutCapture:
    """Process-wide, re-entrant capture of `sys.stdout` during calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None
        self._buffer = io.StringIO()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved, self._buffer = sys.stdout, io.StringIO()
                sys.stdout = self._buffer
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    sys.stdout = self._saved
                    text = self._buffer.getvalue().strip()
                    if text:
                        _LOG.debug("panda-client printed: %s", _truncate(text))


_quiet_stdout = _StdoutCapture()


def _is_literal_or_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _apply_dns_rule(urls: list[str]) -> None:
    if "PANDA_BEHIND_REAL_LB" in os.environ:
        return
    opt_in = os.environ.get(NO_DNS_LB_ENV, "").strip() not in ("", "0")
    if opt_in or any(_is_literal_or_loopback(urlparse(url).hostname) for url in urls):
        os.environ["PANDA_BEHIND_REAL_LB"] = "1"
        _LOG.debug("Set PANDA_BEHIND_REAL_LB=1: no DNS lookups for %s", ", ".join(urls))


def _relay_urls() -> tuple[str, str]:
    missing = [name for name in ("PANDA_URL", "PANDA_URL_SSL") if not os.environ.get(name)]
    if missing:
        raise PanDAConfigError(
            missing[-1],
            f"environment variable(s) {' and '.join(missing)} not set; set PANDA_URL and "
            "PANDA_URL_SSL to the PanDA server, e.g. https://<host>:25443/server/panda "
            '(for the local service: eval "$(panda-local env)")',
        )
    return os.environ["PANDA_URL"], os.environ["PANDA_URL_SSL"]


def _check_auth_env() -> None:
    if os.environ.get("PANDA_AUTH") != "oidc":
        return
    if not (os.environ.get("PANDA_AUTH_VO") or os.environ.get("OIDC_AUTH_VO")):
        raise PanDAConfigError(
            "PANDA_AUTH_VO",
            "PANDA_AUTH=oidc requires the environment variable PANDA_AUTH_VO (or OIDC_AUTH_VO), "
            "e.g. PANDA_AUTH_VO=Rubin",
        )


def _pandaclient() -> tuple[ModuleType, ModuleType]:
    """Import panda-client (after the DNS rule) and sync its URLs."""
    url, url_ssl = _relay_urls()
    _check_auth_env()
    _apply_dns_rule([url_ssl, url])
    from pandaclient import Client, idds_api

    Client.baseURL = url
    Client.baseURLSSL = url_ssl
    _bound_http(Client)
    return Client, idds_api


_TIMEOUT_PREFIX = "timed out: "
"""Start of the text of a call that hit one of `RelayTimeouts`."""

_CALL_BOUNDS: contextvars.ContextVar[tuple[float, float, str] | None] = contextvars.ContextVar(
    "relay_call_bounds", default=None
)
"""(connect, read, which read key) of the call this thread is making."""


@contextmanager
def _bounded(timeouts: RelayTimeouts, command: str) -> Iterator[None]:
    """Bound the panda-client HTTP requests made inside the block.

    Parameters
    ----------
    timeouts : `RelayTimeouts`
        The bounds.
    command : `str`
        The command (``submit`` and ``putFile`` get the submit bound).
    """
    which = "submit" if command in ("submit", "putFile") else "read"
    token = _CALL_BOUNDS.set((timeouts.connect, getattr(timeouts, which), which))
    try:
        yield
    finally:
        _CALL_BOUNDS.reset(token)


def _timeout_text(exc: Exception, url: Any, bounds: tuple[float, float, str]) -> str:
    """Say which host did not answer, within what, and how to change it."""
    import httpx

    parsed = urlparse(str(url))
    where = f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    connect, read, which = bounds
    if isinstance(exc, httpx.ConnectTimeout):
        key, variable = RELAY_TIMEOUT_KEYS["connect"]
        return (
            f"{_TIMEOUT_PREFIX}PanDA relay {where} accepted no connection within {connect:g} s "
            f"(connect timeout: {key} / {variable})"
        )
    key, variable = RELAY_TIMEOUT_KEYS[which]
    return (
        f"{_TIMEOUT_PREFIX}PanDA relay {where} did not answer within {read:g} s "
        f"(read timeout: {key} / {variable})"
    )


def _bound_http(client_module: ModuleType) -> None:
    """Make panda-client's HTTP clients honour `_CALL_BOUNDS`.

    panda-client builds one ``httpx.Client(timeout=600)`` per request (in
    ``pandaclient.Client``); its ``httpx`` name is pointed, once, at a
    stand-in whose ``Client`` applies the bounds of the current call (none
    outside `_bounded`: panda-client's own 600 s) and turns a timeout into
    an error naming the host and the bound.

    Parameters
    ----------
    client_module : `types.ModuleType`
        ``pandaclient.Client``.
    """
    real = getattr(client_module, "httpx", None)
    if real is None or isinstance(real, _HttpxStandIn):
        if real is None:
            _LOG.warning("pandaclient.Client does not use httpx: relay calls are not bounded")
        return
    setattr(client_module, "httpx", _HttpxStandIn(real))  # noqa: B010 (attribute of another module)


class _HttpxStandIn:
    """The ``httpx`` module as panda-client sees it: bounded clients."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self.Client = _bounded_client_class(real)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _bounded_client_class(httpx: ModuleType) -> type:
    """Return an ``httpx.Client`` subclass applying `_CALL_BOUNDS`."""

    class BoundedClient(httpx.Client):  # type: ignore[name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._bounds = _CALL_BOUNDS.get()
            if self._bounds is not None:
                connect, read, _ = self._bounds
                kwargs["timeout"] = httpx.Timeout(read, connect=connect)
            super().__init__(*args, **kwargs)

        def request(self, method: str, url: Any, **kwargs: Any) -> Any:
            try:
                return super().request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                if self._bounds is None:
                    raise
                raise type(exc)(_timeout_text(exc, url, self._bounds)) from exc

    return BoundedClient


def cache_url(name: str) -> str:
    """Return the download URL of a cached file, as workers reach it.

    Parameters
    ----------
    name : `str`
        File name in the cache.

    Returns
    -------
    url : `str`
        ``<PANDACACHE_URL or PANDA_URL_SSL>/cache/<name>``.
    """
    base = os.environ.get("PANDACACHE_URL") or _relay_urls()[1]
    return f"{base.rstrip('/')}/cache/{name}"


def _sync_cache_urls(client: ModuleType) -> None:
    """Point panda-client's import-time cache URLs at the current env."""
    ssl = urlparse(_relay_urls()[1])
    cache = urlparse(os.environ.get("PANDACACHE_URL") or _relay_urls()[1])
    client.server_base_path_ssl = f"{ssl.scheme}://{ssl.netloc}/api/v1"  # type: ignore[attr-defined]
    client.cache_base_path_ssl = f"{cache.scheme}://{cache.netloc}/api/v1"  # type: ignore[attr-defined]
    client.baseURLCSRVSSL = cache.geturl()  # type: ignore[attr-defined]


def _upload_size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise CacheUploadError(path, str(exc)) from exc
    if size > CACHE_SIZE_LIMIT:
        raise CacheUploadError(
            path, f"{size} bytes is above the PanDA cache limit of {CACHE_SIZE_LIMIT} bytes (10 MiB)"
        )
    return size


class _PresetDumper:
    """The idds dumper, sending a workflow's JSON already encoded.

    ``json_dumps(kwargs)`` of ``{"workflow": wf, ...}`` equals
    ``'{"workflow": ' + json_dumps(wf) + ', ...}'``; splicing the encoded
    text (`EncodedRequest.text`) avoids serialising the workflow again.
    """

    def __init__(self, workflow: Any, text: str) -> None:
        self.workflow = workflow
        self.text = text

    def __call__(self, obj: Any) -> str:
        from idds.common.utils import json_dumps

        if not (isinstance(obj, dict) and next(iter(obj), None) == "workflow"):
            return json_dumps(obj)
        if obj["workflow"] is not self.workflow:
            return json_dumps(obj)
        rest = json_dumps({key: value for key, value in obj.items() if key != "workflow"})
        tail = "}" if rest == "{}" else ", " + rest[1:]
        return '{"workflow": ' + self.text + tail


class PanDARelayTransport:
    """`IDDSTransport` through the PanDA relay with panda-client.

    Parameters
    ----------
    idds_host : `str`, optional
        iDDS REST URL (BPS ``iddsServer``); `None` lets the relay choose.
    retry : `RetryPolicy`, optional
        Backoff of read-only commands on transient failures.
    sleep : callable, optional
        Called with the delay in seconds between tries (`time.sleep`).
    timeouts : `RelayTimeouts`, optional
        Bounds of every call; by default `service_settings.relay_timeouts`
        of no configuration (environment, then packaged defaults), read
        at the first call.
    """

    def __init__(
        self,
        idds_host: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeouts: RelayTimeouts | None = None,
    ) -> None:
        self.idds_host = idds_host or None
        self.retry_policy = retry or RetryPolicy()
        self._sleep = sleep
        self._timeouts = timeouts

    @property
    def timeouts(self) -> RelayTimeouts:
        """Bounds of every relay call (`RelayTimeouts`)."""
        if self._timeouts is None:
            self._timeouts = relay_timeouts()
        return self._timeouts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(idds_host={self.idds_host!r})"

    def _raw_call(
        self, command: str, kwargs: dict[str, Any], dumper: Callable[[Any], str] | None = None
    ) -> Any:
        """Send one command; return panda-client's raw ``(status, payload)``.

        The single seam between this module and panda-client.
        """
        from idds.common.utils import json_dumps

        client, idds_api = _pandaclient()
        request_gzip.install(client)
        with _API_LOCK:  # get_api() reconfigures one module-global object
            api = idds_api.get_api(
                dumper or json_dumps, idds_host=self.idds_host, compress=True, manager=True
            )
            method = getattr(api, command)
        with _quiet_stdout(), _bounded(self.timeouts, command):
            try:
                reply = method(**kwargs)
            except SystemExit as exc:
                raise PandaAuthError(
                    f"panda-client gave up (exit status {exc.code}) during '{command}'; "
                    "check PANDA_AUTH, PANDA_AUTH_VO and the token (panda_auth status)"
                ) from exc
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("iDDS %s -> %s", command, _truncate(reply))
        return reply

    def _call(
        self,
        command: str,
        kwargs: dict[str, Any],
        request_id: int | None = None,
        dumper: Callable[[Any], str] | None = None,
    ) -> Any:
        """Send a command and unwrap the reply, retrying read-only ones."""
        attempts = max(1, self.retry_policy.attempts) if command in READ_ONLY_COMMANDS else 1
        for attempt in range(1, attempts + 1):
            try:
                return unwrap_reply(command, request_id, self._raw_call(command, kwargs, dumper))
            except PanDAUnreachableError as exc:
                if isinstance(exc, RelayTimeoutError):
                    raise  # a relay that did not answer in time is not asked again
                if attempt == attempts:
                    if attempts > 1:
                        raise PanDAUnreachableError(
                            command, request_id, f"{exc.detail} (after {attempts} attempts)"
                        ) from exc
                    raise
                pause = self.retry_policy.delay(attempt)
                _LOG.warning(
                    "iDDS %s: %s; try %d of %d in %.1f s", command, exc.detail, attempt + 1, attempts, pause
                )
                self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> dict[str, Any]:
        """Check that the relay and iDDS answer.

        Returns
        -------
        reply : `dict`
            ``{"Status": "OK"}``.

        Raises
        ------
        PanDAUnreachableError
            The relay cannot be reached.
        IDDSRequestError
            The relay or iDDS answered with anything else.
        """
        result = self._call("ping", {})
        if result != {"Status": "OK"}:
            raise IDDSRequestError("ping", None, f"unexpected reply {_truncate(result)}")
        return result

    def submit(self, request: EncodedRequest, *, request_cache: str) -> int:
        """Submit an encoded request, in steps if it was found too large.

        Parameters
        ----------
        request : `EncodedRequest`
            The request (`request_encoding.encode_request`): its text is
            sent as it is, or, when ``request.split``, its workflow is
            split with ``split_workflow_to_steps`` and sent step by step.
        request_cache : `str`
            Directory where the split writes dependency maps.

        Returns
        -------
        request_id : `int`
            The iDDS request id of the workflow.

        Raises
        ------
        IDDSRequestError
            If the server refused a step or the workflow, or returned
            something other than a request id. Never retried.
        """
        text = self._send_steps(request, request_cache)
        return self._submit_one(request.workflow, text, step=False)

    def _send_steps(self, request: EncodedRequest, request_cache: str) -> str | None:
        """Submit the steps of a request to split; return the text to send.

        Parameters
        ----------
        request : `EncodedRequest`
            The request.
        request_cache : `str`
            Directory where the split writes dependency maps.

        Returns
        -------
        text : `str` or `None`
            The request's JSON when it is not split, else `None` (the
            split changed the workflow: it is serialised anew).
        """
        if not request.split:
            return request.text
        workflow = request.workflow
        steps = workflow.split_workflow_to_steps(
            request_cache=request_cache, max_request_length=request.max_request_length
        )
        for number, step in enumerate(steps, start=1):
            self._submit_one(step, None, step=True)
            _LOG.info("Submitted step %d of %d of workflow %s", number, len(steps), workflow.name)
        return None

    def _submit_one(self, workflow: Any, text: str | None, step: bool) -> int:
        kwargs = {"workflow": workflow, "username": None, "use_dataset_name": False}
        dumper = _PresetDumper(workflow, text) if text is not None else None
        try:
            result = self._call("submit", kwargs, None, dumper)
        except PanDAUnreachableError as exc:
            raise type(exc)(
                "submit",
                None,
                f"{exc.detail}; not retried: the request may still have been created, "
                "check with 'bps report' before submitting again",
            ) from exc
        valid = isinstance(result, int) and not isinstance(result, bool) and (step or result > 0)
        if not valid:
            what = "workflow step" if step else "workflow"
            raise IDDSRequestError("submit", None, f"no request id for the {what}: {_truncate(result)}")
        return result

    def get_requests(self, request_id: int | None = None, with_detail: bool = False) -> list[dict[str, Any]]:
        """Return request rows (one per transform with detail).

        Parameters
        ----------
        request_id : `int`, optional
            The request; all the caller's requests when `None`.
        with_detail : `bool`, optional
            Add transform, processing and collection columns.

        Returns
        -------
        rows : `list` [`dict`]
            The rows; empty for an unknown id.

        Raises
        ------
        IDDSRequestError
            On any failure (`PanDAUnreachableError` after the retries).
        """
        kwargs = {"request_id": request_id, "with_detail": with_detail}
        result = self._call("get_requests", kwargs, request_id)
        if not isinstance(result, list) or not all(isinstance(row, dict) for row in result):
            raise IDDSRequestError("get_requests", request_id, f"unexpected reply {_truncate(result)}")
        return result

    def _control(self, command: str, request_id: int) -> str:
        result = self._call(command, {"request_id": request_id}, request_id)
        return "; ".join(str(info.get("message", "")) for _, info in result)

    def abort(self, request_id: int) -> str:
        """Abort a request (never retried).

        Parameters
        ----------
        request_id : `int`
            The request.

        Returns
        -------
        message : `str`
            The server's message, e.g. ``Command registered successfully``.

        Raises
        ------
        IDDSRequestError
            If refused, e.g. ``No match requests`` for an unknown id.
        """
        return self._control("abort", request_id)

    def retry(self, request_id: int) -> str:
        """Retry the failed jobs of a request (never retried itself).

        Parameters
        ----------
        request_id : `int`
            The request.

        Returns
        -------
        message : `str`
            The server's message.

        Raises
        ------
        IDDSRequestError
            If refused, e.g. ``No match requests`` for an unknown id.
        """
        return self._control("retry", request_id)

    def submit_build(self, request: EncodedRequest) -> int:
        """Submit a remote-build request (``submit_build``; never retried).

        Parameters
        ----------
        request : `EncodedRequest`
            The build request (`request_encoding.encode_build_request`);
            its text is sent as it is.

        Returns
        -------
        request_id : `int`
            The build request's id; the built workflow joins this request.

        Raises
        ------
        IDDSRequestError
            If refused or the reply holds no request id.
        """
        workflow = request.workflow
        kwargs = {"workflow": workflow, "username": None, "use_dataset_name": False}
        result = self._call("submit_build", kwargs, None, _PresetDumper(workflow, request.text))
        if not isinstance(result, int) or isinstance(result, bool) or result <= 0:
            raise IDDSRequestError("submit_build", None, f"no request id: {_truncate(result)}")
        return result

    def update_build_request(
        self, request_id: int, signature: str, request: EncodedRequest, *, request_cache: str = ""
    ) -> Any:
        """Send the request built by a build job into its build request.

        A request to split has its steps submitted first, as `submit`
        does.

        Parameters
        ----------
        request_id : `int`
            ``IDDS_BUILD_REQUEST_ID`` of the build job.
        signature : `str`
            ``IDDS_BUIL_SIGNATURE`` of the build job.
        request : `EncodedRequest`
            The built request.
        request_cache : `str`, optional
            Directory where the split writes dependency maps.

        Returns
        -------
        result : `typing.Any`
            The server's answer.

        Raises
        ------
        IDDSRequestError
            If refused (unknown request, bad signature, invalid workflow).
        """
        text = self._send_steps(request, request_cache)
        workflow = request.workflow
        kwargs = {"workflow": workflow, "request_id": request_id, "signature": signature}
        dumper = _PresetDumper(workflow, text) if text is not None else None
        return self._call("update_build_request", kwargs, request_id, dumper)

    def put_cache_file(self, path: str) -> str:
        """Upload a file to the PanDA cache with panda-client's ``putFile``.

        A file of the same name in the cache is replaced. Retried like the
        read-only commands when the server cannot be reached.

        Parameters
        ----------
        path : `str`
            Local file (at most `CACHE_SIZE_LIMIT` bytes).

        Returns
        -------
        url : `str`
            Where workers download it (`cache_url`).

        Raises
        ------
        CacheUploadError
            If the file is missing or too large, or the server refused it.
        PanDAUnreachableError
            If the server could not be reached (after the retries).
        """
        size = _upload_size(path)
        attempts = max(1, self.retry_policy.attempts)
        for attempt in range(1, attempts + 1):
            try:
                name = self._put_once(path)
                break
            except PanDAUnreachableError as exc:
                if attempt == attempts:
                    raise
                pause = self.retry_policy.delay(attempt)
                _LOG.warning("putFile %s: %s; try %d of %d in %.1f s", path, exc.detail, attempt + 1,
                             attempts, pause)  # fmt: skip
                self._sleep(pause)
        _LOG.info("Uploaded %s (%d bytes) to the PanDA cache as %s", path, size, name)
        return cache_url(name)

    def _put_once(self, path: str) -> str:
        """One ``putFile``; return the name the file has in the cache."""
        client, _ = _pandaclient()
        _sync_cache_urls(client)
        with _quiet_stdout(), _bounded(self.timeouts, "putFile"):
            status, out = client.putFile(path, False)
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        _LOG.debug("putFile %s -> %s %s", path, status, _truncate(text))
        if status != 0:
            if status == 1 or is_unreachable_text(text):
                raise PanDAUnreachableError("putFile", None, _truncate(text))
            raise CacheUploadError(path, f"HTTP {status}: {_truncate(text)}")
        if text.startswith("NewFileName:"):
            return text.rsplit(":", 1)[-1]
        if text != "True":
            raise CacheUploadError(path, _truncate(text))
        return os.path.basename(path)

    def get_contents_output_ext(
        self, request_id: int, workload_id: int | None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the per-job output contents of a request.

        Parameters
        ----------
        request_id : `int`
            The request.
        workload_id : `int` or `None`
            A PanDA task id (``transform_workload_id``) or `None` for all.

        Returns
        -------
        contents : `dict` [`str`, `list` [`dict`]]
            Rows (``panda_id``, ``job_status``, ``trans_exit_code``, ...) by
            transform id (a string: JSON object keys).

        Raises
        ------
        IDDSRequestError
            On any failure (`PanDAUnreachableError` after the retries).
        """
        kwargs = {"request_id": request_id, "workload_id": workload_id}
        result = self._call("get_contents_output_ext", kwargs, request_id)
        if not isinstance(result, dict):
            raise IDDSRequestError(
                "get_contents_output_ext", request_id, f"unexpected reply {_truncate(result)}"
            )
        return result


def transport_from_config(config: Any) -> PanDARelayTransport:
    """Build the transport from a BPS configuration.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`
        Configuration; ``iddsServer`` is used when present (ctrl_bps may
        pass ``{}``).

    Returns
    -------
    transport : `PanDARelayTransport`
        The transport, its calls bounded by `service_settings.relay_timeouts`
        of the configuration; nothing is contacted yet.

    Raises
    ------
    PanDAConfigError
        If a relay timeout is not a positive number of seconds.
    """
    idds_host: Any = None
    if hasattr(config, "search"):
        _, idds_host = config.search("iddsServer", opt={"default": None})
    elif isinstance(config, dict):
        idds_host = config.get("iddsServer")
    return PanDARelayTransport(
        idds_host=str(idds_host) if idds_host else None, timeouts=relay_timeouts(config)
    )
