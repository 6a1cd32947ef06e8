# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""iDDS dependency maps written as JSON text and zipped in the background.

A `DomaPanDAWork` carries its jobs as a *dependency map*: a list of
``{"name", "order_id", "dependencies": [{"task", "inputname"}, ...]}``
entries that iDDS sends zipped (``"idds_zip:"`` + base64 of zlib-compressed
JSON). A map of a million jobs is hundreds of megabytes of JSON, so it is
never held as Python dicts: each job's reference (its entry in its children's
``dependencies``) is encoded once, each map's entries are written as text,
and a background thread compresses them while the next map is built. The
text is byte for byte ``json.dumps(entries, separators=(",", ":"))``.
"""

from __future__ import annotations

__all__ = [
    "MapZipper",
    "encode_name",
    "job_references",
    "map_entries",
    "reference_names",
    "zip_entries",
    "zip_map",
    "zip_text",
]

import base64
import json
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from zlib_ng import zlib_ng

from .constants import ZIP_PREFIX

ZIP_LEVEL = 3
"""Compression level of the zipped maps.

zlib-ng at level 3 writes a standard zlib stream (read back by iDDS with
the stdlib ``zlib``), smaller than stdlib zlib at its default level and
faster than stdlib zlib at level 3; see doc/performance.md for the bytes
on the wire it gives.
"""

SWITCH_INTERVAL = 5e-5
"""Seconds the zipping thread waits for the GIL before asking for it.

The compressor takes the GIL back after every output block; with the
default 5 ms it would sit idle while the builder holds the GIL.
"""

PIECE_ENTRIES = 256
"""Map entries encoded and compressed at a time (about 80 kB of JSON)."""

MAX_PENDING = 2
"""Maps waiting for the compressing thread before the builder waits."""

encode_name: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""Return a string as a JSON string literal, as `json.dumps` does."""


def job_references(task_literal: str, name_literals: Iterable[str]) -> list[str]:
    """Return the jobs' entries in their children's ``dependencies``, as JSON.

    Parameters
    ----------
    task_literal : `str`
        The jobs' task name, a JSON literal (`encode_name`).
    name_literals : `~collections.abc.Iterable` [`str`]
        Each job's map name, a JSON literal.

    Returns
    -------
    texts : `list` [`str`]
        ``{"task":...,"inputname":...}`` for each job.
    """
    prefix = '{"task":' + task_literal + ',"inputname":'
    return [prefix + name + "}" for name in name_literals]


def reference_names(task_literal: str, references: Iterable[str]) -> list[str]:
    """Return the map names held in `job_references` texts.

    The inverse of `job_references`: the generator keeps each job's
    reference only and takes its map name back from it when the job's own
    entry is written.

    Parameters
    ----------
    task_literal : `str`
        The jobs' task name, a JSON literal (`encode_name`).
    references : `~collections.abc.Iterable` [`str`]
        Their references, as `job_references` returned them.

    Returns
    -------
    name_literals : `list` [`str`]
        Each job's map name, a JSON literal.
    """
    start = len('{"task":') + len(task_literal) + len(',"inputname":')
    return [reference[start:-1] for reference in references]


def map_entries(
    name_literals: Sequence[str], first_order_id: int, dependencies: Iterable[Iterable[str]]
) -> list[str]:
    """Return the entries of a dependency map, each as compact JSON text.

    Parameters
    ----------
    name_literals : `~collections.abc.Sequence` [`str`]
        Each job's map name, a JSON literal, in order.
    first_order_id : `int`
        Order id of the first job (the next ones count up).
    dependencies : `~collections.abc.Iterable`
        For each job, the `job_references` texts of its parents.

    Returns
    -------
    entries : `list` [`str`]
        The map's entries; ``"[" + ",".join(entries) + "]"`` is its JSON.
    """
    order_ids = range(first_order_id, first_order_id + len(name_literals))
    return [
        f'{{"name":{name},"order_id":{order_id},"dependencies":[{",".join(refs)}]}}'
        for name, order_id, refs in zip(name_literals, order_ids, dependencies, strict=True)
    ]


def zip_entries(entries: Sequence[str]) -> str:
    """Return a map given as entry texts in iDDS's zipped form.

    The JSON is encoded and compressed `PIECE_ENTRIES` entries at a time:
    the map's whole text (megabytes for a large task) is never built.

    Parameters
    ----------
    entries : `~collections.abc.Sequence` [`str`]
        ASCII JSON of each entry (`map_entries`).

    Returns
    -------
    zipped : `str`
        Same as `zip_text` of the map's JSON.
    """
    stream = zlib_ng.compressobj(ZIP_LEVEL)
    parts = []
    separator = "["
    for start in range(0, len(entries), PIECE_ENTRIES):
        piece = separator + ",".join(entries[start : start + PIECE_ENTRIES])
        parts.append(stream.compress(piece.encode()))
        separator = ","
    parts.append(stream.compress(b"]" if entries else b"[]"))
    parts.append(stream.flush())
    return ZIP_PREFIX + base64.b64encode(b"".join(parts)).decode()


def zip_text(text: str) -> str:
    """Return map JSON in iDDS's zipped form.

    Parameters
    ----------
    text : `str`
        ASCII JSON text of a map.

    Returns
    -------
    zipped : `str`
        ``"idds_zip:"`` + base64 of its zlib compression, read back by
        iDDS's ``unzip_data``.
    """
    return ZIP_PREFIX + base64.b64encode(zlib_ng.compress(text.encode(), ZIP_LEVEL)).decode()


def zip_map(entries: list[dict[str, Any]]) -> str:
    """Zip a dependency map held as a list.

    Parameters
    ----------
    entries : `list` [`dict`]
        The map.

    Returns
    -------
    zipped : `str`
        The map in iDDS's zipped form (`zip_text`).
    """
    return zip_text(json.dumps(entries, separators=(",", ":"), check_circular=False))


class MapZipper:
    """Zip maps on one background thread while the caller builds the next.

    zlib releases the GIL while it compresses, so on two cores the
    compression costs the builder almost nothing. At most `MAX_PENDING`
    maps wait, so the texts waiting never outgrow two maps. While it runs
    the interpreter's switch interval is `SWITCH_INTERVAL` (restored by
    `close`).

    Use as a context manager; `close` (on exit) waits for every map and
    hands each zipped map to the callback given with it, in order.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="map-zip")
        self._pending: deque[tuple[Future[str], Callable[[str], None]]] = deque()
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL))

    def __enter__(self) -> MapZipper:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
            sys.setswitchinterval(self._interval)

    def add(self, entries: Sequence[str], done: Callable[[str], None]) -> None:
        """Queue a map for zipping.

        Parameters
        ----------
        entries : `~collections.abc.Sequence` [`str`]
            The map's entries as JSON (`map_entries`).
        done : `~collections.abc.Callable` [[`str`], `None`]
            Called, on the caller's thread, with the zipped map.
        """
        while len(self._pending) >= MAX_PENDING:
            self._take_oldest()
        self._pending.append((self._pool.submit(zip_entries, entries), done))

    def close(self) -> None:
        """Wait for every queued map and deliver it; stop the thread."""
        try:
            while self._pending:
                self._take_oldest()
        finally:
            self._pool.shutdown(wait=True)
            sys.setswitchinterval(self._interval)

    def _take_oldest(self) -> None:
        """Wait for the oldest queued map and deliver it."""
        future, done = self._pending.popleft()
        done(future.result())
