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

__all__ = ["PROGRESS_INTERVAL", "RETRY_DELAY", "stage_files"]

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from lsst.resources import ResourcePath

from .exceptions import StagingError

_LOG = logging.getLogger(__name__)

_ATTEMPTS = 3
"""Copies failing with a transient error are tried this many times."""

RETRY_DELAY = 0.5
"""Seconds before the first retry; doubled for each further one."""

_PERMANENT_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
)
"""Errors a retry cannot fix."""

PROGRESS_INTERVAL = 10.0
"""Seconds between two progress messages during a long staging."""


@dataclass(frozen=True)
class _Copy:
    """One file to copy.

    Parameters
    ----------
    name : `str`
        The source as given (or below a given directory), for reports.
    source : `lsst.resources.ResourcePath`
        The file to copy.
    target : `lsst.resources.ResourcePath`
        Where the file goes.
    size : `int`
        Size of the source in bytes.
    """

    name: str
    source: ResourcePath
    target: ResourcePath
    size: int


@dataclass
class _Plan:
    """Everything to copy, and the sources already known to fail."""

    copies: list[_Copy] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    empty_dirs: list[ResourcePath] = field(default_factory=list)


def stage_files(files: dict[str, str], endpoint: str, max_workers: int) -> list[str]:
    """Copy files to the distribution endpoint and verify every copy.

    Parameters
    ----------
    files : `dict` [`str`, `str`]
        Map of target path relative to the endpoint to source path or URI.
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
    workers = max(1, max_workers)
    plan = _Plan()
    targets = [str(_add_entry(plan, base, relative, source)) for relative, source in files.items()]
    total_bytes = sum(copy.size for copy in plan.copies)
    _LOG.info(
        "Staging %d file(s), %d bytes, to %s with %d worker(s)", len(plan.copies), total_bytes, base, workers
    )
    start = time.monotonic()
    for directory in plan.empty_dirs:
        _make_dir(directory, plan.failures)
    plan.failures.update(_run_copies(plan.copies, workers, total_bytes))
    elapsed = time.monotonic() - start
    if plan.failures:
        _LOG.error("Staging to %s failed for %d file(s) after %.2f s", base, len(plan.failures), elapsed)
        raise StagingError(plan.failures)
    _LOG.info("Staged %d file(s), %d bytes, to %s in %.2f s", len(plan.copies), total_bytes, base, elapsed)
    return targets


def _add_entry(plan: _Plan, base: ResourcePath, relative: str, source: str) -> ResourcePath:
    """Add the copies of one entry of the files map to the plan.

    Parameters
    ----------
    plan : `_Plan`
        The plan, updated in place (copies, or a failure if the source
        cannot be read).
    base : `lsst.resources.ResourcePath`
        The endpoint, as a directory.
    relative : `str`
        Target path relative to the endpoint.
    source : `str`
        Source path or URI, file or directory.

    Returns
    -------
    target : `lsst.resources.ResourcePath`
        The target of this entry.
    """
    try:
        src = ResourcePath(source, forceAbsolute=True)
        is_dir = src.isdir()
    except Exception as exc:  # a malformed URI is a failure like any other
        plan.failures[source] = f"invalid source: {exc}"
        return base.join(relative.strip("/"))
    target = base.join(relative.strip("/"), forceDirectory=is_dir)
    try:
        if not is_dir:
            plan.copies.append(_Copy(source, src, target, src.size()))
            return target
        found = list(ResourcePath.findFileResources([src]))
        if not found:
            if not src.exists():
                raise FileNotFoundError(source)
            plan.empty_dirs.append(target)
        for item in found:
            name = f"{source.rstrip('/')}/{item.relative_to(src)}"
            plan.copies.append(_Copy(name, item, target.join(item.relative_to(src)), item.size()))
    except FileNotFoundError:
        plan.failures[source] = "source does not exist"
    except Exception as exc:  # unreadable source or backend error
        plan.failures[source] = f"cannot read source: {type(exc).__name__}: {exc}"
    return target


def _make_dir(directory: ResourcePath, failures: dict[str, str]) -> None:
    """Create the target of an empty source directory.

    Parameters
    ----------
    directory : `lsst.resources.ResourcePath`
        The target directory.
    failures : `dict` [`str`, `str`]
        Failure map, updated if the directory cannot be made.
    """
    try:
        directory.mkdir()
    except Exception as exc:  # any backend error becomes a failure entry
        failures[str(directory)] = f"cannot create directory: {type(exc).__name__}: {exc}"


def _run_copies(copies: list[_Copy], workers: int, total_bytes: int) -> dict[str, str]:
    """Run the copies on a thread pool, logging progress.

    Parameters
    ----------
    copies : `list` [`_Copy`]
        The copies.
    workers : `int`
        Size of the thread pool.
    total_bytes : `int`
        Bytes of all copies, for progress messages.

    Returns
    -------
    failures : `dict` [`str`, `str`]
        Source name to reason, for every failed copy.
    """
    failures: dict[str, str] = {}
    done_files = done_bytes = 0
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
        futures = {pool.submit(_copy_and_verify, copy): copy for copy in copies}
        for future in as_completed(futures):
            copy = futures[future]
            reason = future.result()
            if reason is not None:
                failures[copy.name] = reason
            done_files += 1
            done_bytes += copy.size
            if time.monotonic() - last_report >= PROGRESS_INTERVAL:
                last_report = time.monotonic()
                _LOG.info(
                    "Staged %d/%d file(s), %d/%d bytes", done_files, len(copies), done_bytes, total_bytes
                )
    return failures


def _copy_and_verify(copy: _Copy) -> str | None:
    """Copy one file, retrying transient errors, and check the target size.

    Parameters
    ----------
    copy : `_Copy`
        What to copy where.

    Returns
    -------
    reason : `str` or `None`
        Why the copy failed, or `None` on success.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            copy.target.transfer_from(copy.source, transfer="copy", overwrite=True)
            size = copy.target.size()
            break
        except Exception as exc:  # any backend error becomes a failure entry
            reason = f"copy to {copy.target} failed: {type(exc).__name__}: {exc}"
            if isinstance(exc, _PERMANENT_ERRORS) or attempt == _ATTEMPTS:
                return reason
            _LOG.warning("%s (attempt %d of %d, retrying)", reason, attempt, _ATTEMPTS)
            time.sleep(RETRY_DELAY * 2 ** (attempt - 1))
    if size != copy.size:
        return f"verification of {copy.target} failed: {size} bytes instead of {copy.size}"
    _LOG.debug("Staged %s -> %s (%d bytes)", copy.name, copy.target, size)
    return None
