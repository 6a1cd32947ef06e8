# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The PanDA file cache of the local service.

panda-client's ``putFile`` posts one file as ``multipart/form-data`` field
``file`` (its filename is the client's local path) to
``/api/v1/file_server/upload_cache_file`` with the bearer token; workers
download it by name with ``getFile`` from
``<PANDACACHE_URL host>/cache/<name>`` (also served under
``/server/panda/cache/<name>``, the URL the plugin writes into custom jobs'
command lines), without a token, like the real cache's static files.
Files live in ``<state>/cache/``; a name is a single path component of
``[A-Za-z0-9._-]`` starting with a letter or digit, so no request can
reach outside that directory. Uploads above `CACHE_SIZE_LIMIT` are refused.
"""

from __future__ import annotations

__all__ = ["CacheEndpoint", "FileCache", "cache_name"]

import email.parser
import email.policy
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from lsst.ctrl.bps.panda.constants import CACHE_SIZE_LIMIT

_LOG = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_MULTIPART_OVERHEAD = 64 * 1024
"""Bytes allowed above the file size for the multipart envelope."""


def cache_name(name: str) -> str | None:
    """Return the cache name of an uploaded or requested file, if valid.

    Parameters
    ----------
    name : `str`
        A file name, possibly with a client-side directory (only its last
        component counts).

    Returns
    -------
    name : `str` or `None`
        The base name, or `None` when it is not a safe single component.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base if _NAME.match(base) else None


class FileCache:
    """Files of the cache, under one directory.

    Parameters
    ----------
    root : `str`
        Directory holding the files (created on first upload, mode 0700).
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, name: str) -> str | None:
        """Return the path of a cached file, or `None` if absent or invalid.

        Parameters
        ----------
        name : `str`
            Cache name.

        Returns
        -------
        path : `str` or `None`
            The file.
        """
        if cache_name(name) != name:
            return None
        path = os.path.join(self.root, name)
        return path if os.path.isfile(path) else None

    def store(self, name: str, data: bytes) -> str:
        """Write a file atomically (an existing file of that name is replaced).

        Parameters
        ----------
        name : `str`
            Cache name (already validated with `cache_name`).
        data : `bytes`
            Content.

        Returns
        -------
        path : `str`
            The stored file.
        """
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.chmod(tmp, 0o600)
            final = os.path.join(self.root, name)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final


def _upload_reply(success: bool, message: str, status: int = 200) -> Response:
    body = json.dumps({"success": success, "message": message, "data": None})
    return Response(body, status_code=status, media_type="application/json")


def _file_part(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    """Return (client file name, content) of the ``file`` field, if any."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return str(part.get_filename() or ""), payload if isinstance(payload, bytes) else b""
    return None


class CacheEndpoint:
    """HTTP handlers of the cache.

    Parameters
    ----------
    cache : `FileCache`
        Where files are kept.
    auth_problem : callable
        Returns why a request's credentials are refused, or `None`.
    size_limit : `int`, optional
        Largest accepted file, in bytes.
    """

    def __init__(
        self,
        cache: FileCache,
        auth_problem: Callable[[Request], str | None],
        size_limit: int = CACHE_SIZE_LIMIT,
    ) -> None:
        self.cache = cache
        self.auth_problem = auth_problem
        self.size_limit = size_limit

    async def upload(self, request: Request) -> Response:
        """Serve ``putFile``: store the ``file`` field under its base name."""
        problem = self.auth_problem(request)
        if problem is not None:
            return PlainTextResponse(problem, status_code=403)
        declared = int(request.headers.get("content-length") or 0)
        if declared > self.size_limit + _MULTIPART_OVERHEAD:
            return _upload_reply(False, f"Exceeded size limit {declared}>{self.size_limit}", 413)
        body = await request.body()
        part = _file_part(request.headers.get("content-type", ""), body)
        if part is None:
            return _upload_reply(False, "No file field 'file' in the multipart upload", 400)
        client_name, data = part
        name = cache_name(client_name)
        if name is None:
            return _upload_reply(False, f"Invalid file name {client_name!r}", 400)
        if len(data) > self.size_limit:
            return _upload_reply(False, f"Exceeded size limit {len(data)}>{self.size_limit}", 413)
        self.cache.store(name, data)
        _LOG.info("Cache: stored %s (%d bytes)", name, len(data))
        return _upload_reply(True, "")

    async def download(self, request: Request) -> Response:
        """Serve ``getFile``: the file named in the path, else 404."""
        name = str(request.path_params.get("name", ""))
        path = self.cache.path(name)
        if path is None:
            return PlainTextResponse(f"{name} not found in the cache", status_code=404)
        return FileResponse(path, media_type="application/octet-stream")
