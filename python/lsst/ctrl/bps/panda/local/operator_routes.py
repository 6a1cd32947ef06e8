# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Operator routes: a JSON view of runs and jobs, and the monitor page.

All need the service's token, like the relay: as ``Authorization: Bearer``
(``panda-local jobs|watch``), or, for a browser, once as ``?token=`` in the
URL ``panda-local monitor`` prints, which answers with a redirect to the
same page without it and sets an HTTP-only cookie holding the token.

* ``GET /panda-local/api/runs`` -> list of runs;
* ``GET /panda-local/api/runs/{id}`` -> ``{"run": ..., "tasks": [...]}``;
* ``GET /panda-local/api/runs/{id}/jobs`` -> list of jobs;
* ``GET /panda-local/monitor`` and ``/panda-local/monitor/{id}``: HTML.
"""

from __future__ import annotations

__all__ = ["operator_routes"]

import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .auth import AUTH_FAILED_PREFIX, TokenInfo
from .layout import StateLayout
from .monitor_page import render_run, render_runs
from .overview import job_lines, run_summaries, stderr_tail, task_summaries
from .routes import API_PATH, MONITOR_PATH, TOKEN_COOKIE
from .store import Store

_STDERR_LINES = 20

_Handler = Callable[[Request], Awaitable[Response]]


class _Views:
    """Handlers over one store."""

    def __init__(self, store: Store, layout: StateLayout, token: TokenInfo) -> None:
        self.store = store
        self.layout = layout
        self.token = token

    def valid(self, value: str | None) -> bool:
        return bool(value) and secrets.compare_digest(
            str(value).strip().encode(), self.token.id_token.encode()
        )

    def guarded(self, handler: _Handler, browser: bool) -> _Handler:
        async def guard(request: Request) -> Response:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if (scheme.lower() == "bearer" and self.valid(value)) or self.valid(
                request.cookies.get(TOKEN_COOKIE)
            ):
                return await handler(request)
            if self.valid(request.query_params.get("token")):
                if not browser:
                    return await handler(request)
                reply = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
                reply.set_cookie(TOKEN_COOKIE, self.token.id_token, httponly=True, samesite="strict",
                                 path="/panda-local")  # fmt: skip
                return reply
            return PlainTextResponse(
                f"{AUTH_FAILED_PREFIX} Open the URL printed by 'panda-local monitor'", status_code=403
            )

        return guard

    def _read(self, function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        def work() -> Any:
            with self.store.begin() as conn:
                return function(conn, *args)

        return run_in_threadpool(work)

    async def runs(self, request: Request) -> Response:
        return JSONResponse([run.as_dict() for run in await self._read(run_summaries)])

    async def run(self, request: Request) -> Response:
        request_id = int(request.path_params["request_id"])
        found = await self._read(run_summaries, request_id)
        if not found:
            return JSONResponse({"error": f"No run {request_id}"}, status_code=404)
        tasks = await self._read(task_summaries, request_id)
        return JSONResponse({"run": found[0].as_dict(), "tasks": [dataclasses.asdict(t) for t in tasks]})

    async def jobs(self, request: Request) -> Response:
        request_id = int(request.path_params["request_id"])
        if not await self._read(run_summaries, request_id):
            return JSONResponse({"error": f"No run {request_id}"}, status_code=404)
        lines = await self._read(job_lines, request_id, self.layout)
        return JSONResponse([dataclasses.asdict(line) for line in lines])

    async def monitor(self, request: Request) -> Response:
        return HTMLResponse(render_runs(await self._read(run_summaries), MONITOR_PATH))

    async def monitor_run(self, request: Request) -> Response:
        request_id = int(request.path_params["request_id"])
        found = await self._read(run_summaries, request_id)
        if not found:
            return HTMLResponse(f"<p>No run {request_id}</p>", status_code=404)
        tasks = await self._read(task_summaries, request_id)
        lines = await self._read(job_lines, request_id, self.layout)
        failed = [(job, stderr_tail(job.stderr, _STDERR_LINES)) for job in lines if job.state == "FAILED"]
        return HTMLResponse(render_run(found[0], tasks, failed, MONITOR_PATH))


def operator_routes(store: Store, layout: StateLayout, token: TokenInfo) -> list[Route]:
    """Return the operator routes.

    Parameters
    ----------
    store : `Store`
        The service database.
    layout : `StateLayout`
        The state directory (job logs).
    token : `TokenInfo`
        The accepted token.

    Returns
    -------
    routes : `list` [`starlette.routing.Route`]
        The JSON and HTML routes, all behind the token.
    """
    views = _Views(store, layout, token)
    json_routes = {
        f"{API_PATH}/runs": views.runs,
        f"{API_PATH}/runs/{{request_id:int}}": views.run,
        f"{API_PATH}/runs/{{request_id:int}}/jobs": views.jobs,
    }
    html_routes = {MONITOR_PATH: views.monitor, f"{MONITOR_PATH}/{{request_id:int}}": views.monitor_run}
    return [
        Route(path, views.guarded(handler, False), methods=["GET"]) for path, handler in json_routes.items()
    ] + [Route(path, views.guarded(handler, True), methods=["GET"]) for path, handler in html_routes.items()]
