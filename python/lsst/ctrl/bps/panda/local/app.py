# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The ASGI application: the PanDA relay route and a status route.

``POST /server/panda/relay_idds_command`` takes what panda-client 2.2.0
sends: a gzip body (no ``Content-Encoding``) of a JSON document whose
``args``/``kwargs`` are JSON strings made by the idds encoder, and answers
``text/plain`` ``[true, <result>]`` with the real relay's error envelopes.
"""

from __future__ import annotations

__all__ = ["build_app"]

import gzip
import json
import logging
import secrets
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lsst.ctrl.bps.panda.constants import (
    CACHE_DOWNLOAD_PREFIX,
    CACHE_UPLOAD_PATH,
    PANDA_SERVER_PATH,
    RELAY_PATH,
)

from .auth import AUTH_FAILED_PREFIX, TokenInfo
from .cache import CacheEndpoint, FileCache
from .commands import BadIdError, CommandSet
from .operator_routes import operator_routes
from .routes import STATUS_PATH
from .wire import relay_reply

_LOG = logging.getLogger(__name__)


def _is_manager_command(name: str) -> bool:
    from idds.client.clientmanager import ClientManager

    return hasattr(ClientManager, name)


def _only_idds(obj: dict[str, Any]) -> dict[str, Any]:
    module = obj.get("module")
    if "class" in obj and isinstance(module, str) and module != "idds" and not module.startswith("idds."):
        raise ValueError(f"refusing to load class {obj['class']} of module {module}: only idds.* is accepted")
    return obj


def _decode(text: str | None) -> Any:
    # The idds decoder imports any module a payload names: look first.
    from idds.common.utils import json_loads

    if not text:
        return None
    json.loads(text, object_hook=_only_idds)
    return json_loads(text)


class RelayEndpoint:
    """Handles relay requests.

    Parameters
    ----------
    commands : `CommandSet`
        The command implementations.
    token : `TokenInfo`
        The only accepted bearer token.
    """

    def __init__(self, commands: CommandSet, token: TokenInfo) -> None:
        self.commands = commands
        self.token = token

    def auth_refusal(self, request: Request) -> str | None:
        """Return the HTTP 403 text for bad credentials, else `None`."""
        problem = self._auth_error(request)
        return None if problem is None else f"{AUTH_FAILED_PREFIX} {problem}"

    def _auth_error(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "No bearer token in the Authorization header"
        if not secrets.compare_digest(value.strip().encode(), self.token.id_token.encode()):
            return "Invalid token: not issued by this service"
        return None

    async def handle(self, request: Request) -> Response:
        """Serve one relay request."""
        problem = self._auth_error(request)
        if problem is not None:
            return PlainTextResponse(f"{AUTH_FAILED_PREFIX} {problem}", status_code=403)
        body = await request.body()
        try:
            outer = json.loads(gzip.decompress(body))
        except (OSError, EOFError, zlib.error) as exc:
            return PlainTextResponse(str(exc), status_code=500)
        except ValueError as exc:
            return _reply(False, f"failed to execute command with {exc}")
        return await run_in_threadpool(self._dispatch, outer)

    def _dispatch(self, outer: dict[str, Any]) -> Response:
        try:
            name = str(outer["command_name"]).split("+", 1)[0]
            if not _is_manager_command(name):
                return _reply(False, f"{name} is not a command of iDDS ClientManager")
            args = _decode(outer.get("args")) or []
            kwargs = _decode(outer.get("kwargs")) or {}
        except Exception as exc:  # the relay answers any failure this way
            return _reply(False, f"failed to execute command with {exc}")
        method = self.commands.lookup(name)
        if method is None:
            return _reply(True, [False, f"{name} is not supported by the local PanDA service"])
        return _reply(True, _call(method, self.token.name, args, kwargs))


def _call(method: Callable[..., Any], user: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return method(user, *args, **kwargs)
    except BadIdError as exc:
        return [False, str(exc)]
    except Exception as exc:  # ClientManager's exception_handler: (False, str(ex))
        _LOG.exception("Command %s failed", getattr(method, "__name__", method))
        return [False, str(exc)]


def _cache_routes(endpoint: CacheEndpoint) -> list[Route]:
    download = CACHE_DOWNLOAD_PREFIX + "{name}"
    return [
        Route(CACHE_UPLOAD_PATH, endpoint.upload, methods=["POST", "PUT"]),
        Route(download, endpoint.download, methods=["GET"]),
        Route(PANDA_SERVER_PATH + download, endpoint.download, methods=["GET"]),
    ]


def _reply(ok: bool, payload: Any) -> Response:
    return Response(relay_reply(ok, payload), status_code=200, media_type="text/plain")


def build_app(commands: CommandSet, token: TokenInfo, on_startup: Callable[[], None],
              on_shutdown: Callable[[], None], cache: FileCache | None = None) -> Starlette:  # fmt: skip
    """Build the ASGI application.

    Parameters
    ----------
    commands : `CommandSet`
        Command implementations.
    token : `TokenInfo`
        The accepted bearer token.
    on_startup : callable
        Called once the server starts (starts the runner).
    on_shutdown : callable
        Called when the server stops (stops the runner and its jobs).
    cache : `FileCache`, optional
        The PanDA file cache; without it the cache routes are not served.

    Returns
    -------
    app : `starlette.applications.Starlette`
        The application.
    """
    relay = RelayEndpoint(commands, token)

    async def status(request: Request) -> Response:
        summary = await run_in_threadpool(commands.summary)
        return JSONResponse({"status": "up", **summary})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(on_startup)
        try:
            yield
        finally:
            await run_in_threadpool(on_shutdown)

    routes = [Route(RELAY_PATH, relay.handle, methods=["POST"]), Route(STATUS_PATH, status, methods=["GET"])]
    if cache is not None:
        routes += _cache_routes(CacheEndpoint(cache, relay.auth_refusal))
    routes += operator_routes(commands.store, commands.rows.layout, token)
    return Starlette(routes=routes, lifespan=lifespan)
