# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Local-service status rules: counters, request status.

Conditions are evaluated by `conditions.Condition`.

Job (content) statuses used by the service, as `ContentStatus` values:
``New`` waiting for parents or release, ``Activated`` ready, ``Processing``
running, ``Failed`` failed and about to be retried, ``Available`` succeeded,
``FinalFailed`` out of attempts, ``Missing`` skipped because a parent did not
succeed, ``Cancelled`` aborted.
"""

from __future__ import annotations

__all__ = ["counters", "request_status"]

from collections.abc import Mapping

from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

from lsst.ctrl.bps.panda.idds_model import COUNTER_BUCKETS, TRANSFORM_TERMINAL, bucket_of


def counters(by_status: Mapping[int, int]) -> dict[str, int]:
    """Count contents per iDDS counter bucket.

    Parameters
    ----------
    by_status : `~collections.abc.Mapping` [`int`, `int`]
        Number of contents per `ContentStatus` value.

    Returns
    -------
    counts : `dict` [`str`, `int`]
        ``total`` plus one entry per name of `COUNTER_BUCKETS`.
    """
    counts = dict.fromkeys(COUNTER_BUCKETS, 0)
    counts["total"] = 0
    for value, number in by_status.items():
        counts[bucket_of(ContentStatus(value))] += number
        counts["total"] += number
    return counts


def request_status(released: list[TransformStatus], has_unreleased: bool, aborted: bool) -> RequestStatus:
    """Derive a request's status from its released transforms.

    The rule of ``doc/wire-protocol.md`` §14.

    Parameters
    ----------
    released : `list` [`TransformStatus`]
        Status of every released transform.
    has_unreleased : `bool`
        Whether some work was never released (its condition never fired).
    aborted : `bool`
        Whether an abort was registered.

    Returns
    -------
    status : `RequestStatus`
        The request status.
    """
    if any(status not in TRANSFORM_TERMINAL for status in released):
        return RequestStatus.Transforming
    if aborted:
        return RequestStatus.Cancelled
    if all(status == TransformStatus.Finished for status in released):
        return RequestStatus.SubFinished if has_unreleased else RequestStatus.Finished
    if all(status in (TransformStatus.Failed, TransformStatus.Cancelled) for status in released):
        return RequestStatus.Failed
    return RequestStatus.SubFinished
