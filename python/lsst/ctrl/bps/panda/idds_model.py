# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The iDDS model shared by the plugin, the local service and the tests.

Which request, transform and content statuses are terminal, which output
counter (``output_<bucket>_files``) a content status is counted in, how a
transform's status follows from its contents' (`transform_status`) and the
date format of iDDS replies are defined here once (doc/wire-protocol.md
§10, §14).  Standard library and iDDS enums only, so the local service can
import it without the rest of the plugin.
"""

from __future__ import annotations

__all__ = [
    "BUCKET_STATUS",
    "COUNTER_BUCKETS",
    "DATE_FORMAT",
    "JOB_RETRIED",
    "JOB_TERMINAL",
    "REQUEST_FINAL",
    "REQUEST_TERMINAL",
    "TRANSFORM_TERMINAL",
    "bucket_of",
    "names",
    "transform_status",
]

from collections.abc import Iterable, Mapping
from enum import Enum

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

DATE_FORMAT = "%a, %d %b %Y %H:%M:%S UTC"
"""`time.strftime` format of the dates in iDDS replies (always UTC)."""

REQUEST_TERMINAL = frozenset(
    {
        RequestStatus.Finished,
        RequestStatus.SubFinished,
        RequestStatus.Failed,
        RequestStatus.Expired,
        RequestStatus.Cancelled,
        RequestStatus.Suspended,
    }
)
"""Request statuses after which iDDS does no more work on its own."""

REQUEST_FINAL = REQUEST_TERMINAL - {RequestStatus.Suspended}
"""Terminal request statuses that no command can leave (a suspended request
can still be resumed or cancelled)."""

TRANSFORM_TERMINAL = frozenset(
    {
        TransformStatus.Finished,
        TransformStatus.SubFinished,
        TransformStatus.Failed,
        TransformStatus.Expired,
        TransformStatus.Cancelled,
        TransformStatus.Suspended,
    }
)
"""Transform statuses after which iDDS does no more work on its own."""

JOB_TERMINAL = frozenset(
    {ContentStatus.Available, ContentStatus.FinalFailed, ContentStatus.Missing, ContentStatus.Cancelled}
)
"""Content (job) statuses that never change without a retry."""

JOB_RETRIED = JOB_TERMINAL - {ContentStatus.Available}
"""Content statuses a retry (``ResumeRequest``) puts back to work: every
terminal one but success."""

COUNTER_BUCKETS = ("processed", "new", "preprocessing", "activated", "failed", "missing", "processing")
"""Counter buckets, ``<prefix>_<bucket>_files`` (doc/wire-protocol.md §10)."""

BUCKET_STATUS = {
    "processed": ContentStatus.Available,
    "new": ContentStatus.New,
    "preprocessing": ContentStatus.PreProcessing,
    "activated": ContentStatus.Activated,
    "failed": ContentStatus.Failed,
    "missing": ContentStatus.Missing,
    "processing": ContentStatus.Processing,
}
"""The content status a bucket's count stands for when read back."""

_BUCKET_OF = {
    ContentStatus.Available: "processed",
    ContentStatus.Mapped: "processed",
    ContentStatus.FakeAvailable: "processed",
    ContentStatus.New: "new",
    ContentStatus.Failed: "failed",
    ContentStatus.FinalFailed: "failed",
    ContentStatus.SubAvailable: "failed",
    ContentStatus.FinalSubAvailable: "failed",
    ContentStatus.Lost: "missing",
    ContentStatus.Deleted: "missing",
    ContentStatus.Missing: "missing",
    ContentStatus.Processing: "processing",
    ContentStatus.Activated: "activated",
}


def bucket_of(status: ContentStatus) -> str:
    """Return the counter bucket a content status is counted in.

    Parameters
    ----------
    status : `ContentStatus`
        The content status.

    Returns
    -------
    bucket : `str`
        One of `COUNTER_BUCKETS`; ``preprocessing`` for any status not
        counted elsewhere.
    """
    return _BUCKET_OF.get(status, "preprocessing")


def names(members: Iterable[Enum]) -> frozenset[str]:
    """Return the member names of iDDS enum members.

    Parameters
    ----------
    members : `~collections.abc.Iterable` [`~enum.Enum`]
        Enum members, e.g. `REQUEST_TERMINAL`.

    Returns
    -------
    names : `frozenset` [`str`]
        Their names, the form statuses take in relay replies.
    """
    return frozenset(member.name for member in members)


def transform_status(by_status: Mapping[int, int]) -> TransformStatus:
    """Derive a released transform's status from its job statuses.

    Parameters
    ----------
    by_status : `~collections.abc.Mapping` [`int`, `int`]
        Number of jobs per `ContentStatus` value.

    Returns
    -------
    status : `TransformStatus`
        ``Transforming`` while a job can still change; then ``Finished`` if
        all succeeded, ``Cancelled`` if any was cancelled, ``Failed`` if none
        succeeded, else ``SubFinished``.
    """
    total = sum(by_status.values())
    done = sum(n for value, n in by_status.items() if ContentStatus(value) in JOB_TERMINAL)
    if done < total:
        return TransformStatus.Transforming
    succeeded = by_status.get(ContentStatus.Available.value, 0)
    if succeeded == total:
        return TransformStatus.Finished
    if by_status.get(ContentStatus.Cancelled.value, 0):
        return TransformStatus.Cancelled
    return TransformStatus.Failed if succeeded == 0 else TransformStatus.SubFinished
