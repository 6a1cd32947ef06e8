# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Events the scheduler thread of the runner applies in batches.

Worker threads report attempts that ended (or could not start); the relay
reports requests stored or extended and the commands ``abort`` and
``retry``, whose answer is set on the event's `~concurrent.futures.Future`
once the batch that applied it is committed.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "EventKind", "RunEvent"]

import enum
from concurrent.futures import Future
from dataclasses import dataclass

from .graph import Launch


class EventKind(enum.Enum):
    """What happened."""

    ENDED = "ended"
    """An attempt ended (``launch``, ``exit_code``, ``end_time``)."""
    NOT_STARTED = "not_started"
    """An attempt could not be started (``launch``)."""
    LOAD = "load"
    """A request was stored (``request_id``)."""
    EXTEND = "extend"
    """Works were added to a request (``request_id``, ``transform_ids``)."""
    ABORT = "abort"
    """Command: cancel a request (``request_id``)."""
    RETRY = "retry"
    """Command: run the failed jobs of a terminated request again."""
    WAKE = "wake"
    """Nothing: wakes the scheduler (to stop)."""


COMMANDS = frozenset({EventKind.ABORT, EventKind.RETRY})
"""The kinds `Runner.command` takes: they answer through ``result``."""


@dataclass(frozen=True)
class RunEvent:
    """One event for the scheduler thread."""

    kind: EventKind
    request_id: int = 0
    transform_ids: tuple[int, ...] = ()
    launch: Launch | None = None
    exit_code: int = 0
    end_time: float = 0.0
    result: Future[bool] | None = None
    """For a command: whether it changed anything, set once committed."""

    @classmethod
    def ended(cls, launch: Launch, exit_code: int, end_time: float) -> RunEvent:
        """Return the event of an attempt that ended.

        Parameters
        ----------
        launch : `Launch`
            The attempt.
        exit_code : `int`
            Its exit status.
        end_time : `float`
            When it ended.

        Returns
        -------
        event : `RunEvent`
            An `EventKind.ENDED` event.
        """
        return cls(EventKind.ENDED, launch.request_id, launch=launch, exit_code=exit_code, end_time=end_time)

    @classmethod
    def command(cls, kind: EventKind, request_id: int) -> RunEvent:
        """Return a command event with a `~concurrent.futures.Future` for
        its answer.

        Parameters
        ----------
        kind : `EventKind`
            One of `COMMANDS`.
        request_id : `int`
            The request.

        Returns
        -------
        event : `RunEvent`
            The event.

        Raises
        ------
        ValueError
            If ``kind`` is not a command.
        """
        if kind not in COMMANDS:
            raise ValueError(f"{kind.name} is not a command (one of {sorted(k.name for k in COMMANDS)})")
        return cls(kind, request_id, result=Future())
