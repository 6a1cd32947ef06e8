# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The gzip panda-client applies to request bodies, made cheaper.

panda-client gzips the JSON body of every iDDS command with
``gzip.GzipFile(fileobj=..., mode="w")``: the stdlib's level 9. Most of a
large workflow's body is dependency maps already compressed and
base64-encoded (`dependency_map`), on which level 9's longer match search
gains almost nothing over a fast level and costs most of the body's
compression time. `install` points ``pandaclient.Client``'s ``gzip`` name,
once, at a stand-in whose ``GzipFile`` writes the same gzip format with
zlib-ng at `BODY_LEVEL`; the relay decompresses it as before.
"""

from __future__ import annotations

__all__ = ["BODY_LEVEL", "install"]

import gzip
import logging
from types import ModuleType
from typing import Any

from zlib_ng import gzip_ng

_LOG = logging.getLogger(__name__)

BODY_LEVEL = 3
"""zlib-ng level of request bodies (see doc/performance.md for the figures)."""


class _GzipStandIn:
    """The ``gzip`` module as panda-client sees it: zlib-ng at `BODY_LEVEL`."""

    def __init__(self, real: ModuleType, level: int) -> None:
        self._real = real
        self._level = level

    def GzipFile(self, *args: Any, **kwargs: Any) -> Any:
        """Open a `zlib_ng.gzip_ng.GzipNGFile`, at `BODY_LEVEL` unless told."""
        kwargs.setdefault("compresslevel", self._level)
        return gzip_ng.GzipNGFile(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install(client_module: ModuleType, level: int = BODY_LEVEL) -> None:
    """Make panda-client gzip request bodies with zlib-ng at ``level``.

    Idempotent: a module whose ``gzip`` is already a stand-in is left as is.

    Parameters
    ----------
    client_module : `types.ModuleType`
        ``pandaclient.Client``.
    level : `int`, optional
        Compression level (1-9).
    """
    real = getattr(client_module, "gzip", None)
    if real is None or isinstance(real, _GzipStandIn):
        if real is None:
            _LOG.warning("pandaclient.Client does not use gzip: request bodies left as it sends them")
        return
    setattr(client_module, "gzip", _GzipStandIn(gzip, level))  # noqa: B010 (attribute of another module)
