# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Copy the files the jobs need to the file distribution endpoint.

The endpoint is anything `lsst.resources.ResourcePath` understands: a bare
path, ``file://``, ``s3://``, ``davs://``, ... Every copy is verified
afterwards, and all failures are reported together in one `StagingError`.
"""

from __future__ import annotations

__all__ = ["stage_files"]

import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lsst.resources import ResourcePath

from .exceptions import StagingError

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Copy:
    """One file to copy.

    Parameters
    ----------
    source : `str`
        Local path of the file.
    target : `lsst.resources.ResourcePath`
        Where the file goes.
    size : `int`
        Size of the source in bytes.
    """

    source: str
    target: ResourcePath
    size: int


def stage_files(files: dict[str, str], endpoint: str, max_workers: int) -> list[str]:
    """Copy files to the distribution endpoint and verify every copy.

    Parameters
    ----------
    files : `dict` [`str`, `str`]
        Map of target path relative to the endpoint to local source path.
        A source that is a directory is copied recursively below its
        target.
    endpoint : `str`
        The distribution endpoint: a bare path or any URI
        `lsst.resources.ResourcePath` handles.
    max_workers : `int`
        Number of parallel copies (values below 1 mean 1).

    Returns
    -------
    targets : `list` [`str`]
        URI of every target, in the order of ``files``.

    Raises
    ------
    StagingError
        Raised once, after all copies were attempted, if any source is
        missing, any copy failed or any copy could not be verified. It
        lists every failed file with its reason.
    """
    base = ResourcePath(endpoint, forceDirectory=True)
    failures: dict[str, str] = {}
    targets: list[str] = []
    copies: list[_Copy] = []
    for relative, source in files.items():
        target = _join(base, relative, os.path.isdir(source))
        targets.append(str(target))
        copies.extend(_expand(source, target, failures))
    total_bytes = sum(copy.size for copy in copies)
    _LOG.info(
        "Staging %d file(s), %d bytes, to %s with %d worker(s)",
        len(copies),
        total_bytes,
        base,
        max(1, max_workers),
    )
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="stage") as pool:
        for copy, reason in zip(copies, pool.map(_copy_and_verify, copies), strict=True):
            if reason is not None:
                failures[copy.source] = reason
    elapsed = time.monotonic() - start
    if failures:
        _LOG.error("Staging to %s failed for %d file(s) after %.2f s", base, len(failures), elapsed)
        raise StagingError(failures)
    _LOG.info("Staged %d file(s), %d bytes, to %s in %.2f s", len(copies), total_bytes, base, elapsed)
    return targets


def _join(base: ResourcePath, relative: str, is_dir: bool) -> ResourcePath:
    """Return the target of one entry below the endpoint.

    Parameters
    ----------
    base : `lsst.resources.ResourcePath`
        The endpoint, as a directory.
    relative : `str`
        Target path relative to the endpoint.
    is_dir : `bool`
        Whether the target is a directory.

    Returns
    -------
    target : `lsst.resources.ResourcePath`
        The joined target.
    """
    return base.join(relative.strip("/"), forceDirectory=is_dir)


def _expand(source: str, target: ResourcePath, failures: dict[str, str]) -> list[_Copy]:
    """List the files to copy for one source, recording a missing source.

    Parameters
    ----------
    source : `str`
        Local file or directory.
    target : `lsst.resources.ResourcePath`
        Target file, or target directory when ``source`` is a directory.
    failures : `dict` [`str`, `str`]
        Failure map, updated when the source cannot be read.

    Returns
    -------
    copies : `list` [`_Copy`]
        The files to copy; empty if the source is missing.
    """
    try:
        if not os.path.isdir(source):
            return [_Copy(source, target, os.stat(source).st_size)]
        return [
            _Copy(path, target.join(os.path.relpath(path, source)), os.stat(path).st_size)
            for path in _walk_files(source)
        ]
    except OSError as exc:
        reason = "source does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
        failures[source] = reason
        return []


def _walk_files(directory: str) -> Iterable[str]:
    """Yield every file below a directory, raising on unreadable ones.

    Parameters
    ----------
    directory : `str`
        The directory to walk.

    Yields
    ------
    path : `str`
        Path of each file (symbolic links to files included).
    """

    def _raise(exc: OSError) -> None:
        raise exc

    for root, _, names in os.walk(directory, onerror=_raise, followlinks=True):
        for name in sorted(names):
            yield os.path.join(root, name)


def _copy_and_verify(copy: _Copy) -> str | None:
    """Copy one file and check the target's size.

    Parameters
    ----------
    copy : `_Copy`
        What to copy where.

    Returns
    -------
    reason : `str` or `None`
        Why the copy failed, or `None` on success.
    """
    try:
        copy.target.transfer_from(
            ResourcePath(copy.source, forceAbsolute=True), transfer="copy", overwrite=True
        )
        size = copy.target.size()
    except Exception as exc:  # any backend error becomes a failure entry
        return f"copy to {copy.target} failed: {type(exc).__name__}: {exc}"
    if size != copy.size:
        return f"verification of {copy.target} failed: {size} bytes instead of {copy.size}"
    _LOG.debug("Staged %s -> %s (%d bytes)", copy.source, copy.target, size)
    return None
