# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Which process runs a state directory's service, checked by identity.

The pid file holds ``<pid> <start time>``, the start time being field 22 of
``/proc/<pid>/stat`` (clock ticks after boot). A process is taken for the
service only if both match, so a pid reused by an unrelated process after
the service died is never signalled.
"""

from __future__ import annotations

__all__ = ["ServiceProcess", "claim_pid_file", "pid_alive", "process_start_time", "release_pid_file"]

import os
from dataclasses import dataclass

_SERVICE_MODULES = (b"lsst.ctrl.bps.panda.local", b"panda_local_entry")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Tell whether a process exists (and is not a zombie).

    Parameters
    ----------
    pid : `int`
        Process id.

    Returns
    -------
    alive : `bool`
        `True` if it runs.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"


def process_start_time(pid: int) -> int | None:
    """Return when a process started, in clock ticks after boot.

    Parameters
    ----------
    pid : `int`
        Process id.

    Returns
    -------
    start_time : `int` or `None`
        Field 22 of ``/proc/<pid>/stat``; `None` if there is no such process.
    """
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


@dataclass(frozen=True)
class ServiceProcess:
    """A service process as recorded: pid and start time."""

    pid: int
    start_time: int | None
    """`None` in files written before start times were recorded: then the
    command line must name the local service instead."""

    @classmethod
    def current(cls) -> ServiceProcess:
        """Return this process."""
        return cls(os.getpid(), process_start_time(os.getpid()))

    @classmethod
    def read(cls, path: str) -> ServiceProcess | None:
        """Read a pid file (`None` if absent or malformed).

        Parameters
        ----------
        path : `str`
            The pid file.

        Returns
        -------
        process : `ServiceProcess` or `None`
            What it records.
        """
        try:
            with open(path) as stream:
                words = stream.read().split()
            return cls(int(words[0]), int(words[1]) if len(words) > 1 else None)
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        """Tell whether this very process still runs (not a reused pid)."""
        if not pid_alive(self.pid):
            return False
        if self.start_time is not None:
            return process_start_time(self.pid) == self.start_time
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as stream:
                command_line = stream.read()
            return any(module in command_line for module in _SERVICE_MODULES)
        except OSError:
            return False


def claim_pid_file(path: str) -> ServiceProcess | None:
    """Record this process in the pid file unless the recorded one runs.

    Parameters
    ----------
    path : `str`
        The pid file.

    Returns
    -------
    owner : `ServiceProcess` or `None`
        The other service process that runs; `None` once this one is
        recorded.
    """
    recorded = ServiceProcess.read(path)
    if recorded is not None and recorded.pid != os.getpid() and recorded.is_running():
        return recorded
    me = ServiceProcess.current()
    with open(path + ".tmp", "w") as stream:
        stream.write(f"{me.pid}\n" if me.start_time is None else f"{me.pid} {me.start_time}\n")
    os.replace(path + ".tmp", path)
    return None


def release_pid_file(path: str, process: ServiceProcess) -> bool:
    """Remove the pid file if it still records the given process.

    Parameters
    ----------
    path : `str`
        The pid file.
    process : `ServiceProcess`
        The process that owned it.

    Returns
    -------
    removed : `bool`
        Whether a file was removed.
    """
    recorded = ServiceProcess.read(path)
    if recorded is None or recorded.pid != process.pid:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
