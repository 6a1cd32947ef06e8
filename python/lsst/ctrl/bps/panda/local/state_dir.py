# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Make the state directory private; check that the service can use it.

The directory holds the database, its WAL, the token, the logs and every
job's logs: it is made mode 0700 so that no other user can read them. A
directory the service cannot use (read-only or nearly full filesystem, owned
by someone else, shared like ``/tmp``) is refused with one line saying why,
before anything is started.
"""

from __future__ import annotations

__all__ = ["MIN_FREE_BYTES", "StateDirError", "check_token_file", "prepare_state_dir"]

import logging
import os
import stat

_LOG = logging.getLogger(__name__)

MIN_FREE_BYTES = 8 << 20
"""Free space the service needs in its state directory to start."""


class StateDirError(RuntimeError):
    """The state directory or a file in it cannot be used."""


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _check_owner_and_mode(root: str) -> None:
    info = os.stat(root)
    if info.st_uid != os.getuid():
        raise StateDirError(f"State directory {root} belongs to uid {info.st_uid}, not to you")
    if info.st_mode & stat.S_ISVTX:
        raise StateDirError(f"State directory {root} is a shared directory (sticky bit); use one of your own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(root, 0o700)
        _LOG.info("State directory %s made private (mode 0700)", root)


def _check_space(root: str) -> None:
    fs = os.statvfs(root)
    if fs.f_flag & os.ST_RDONLY:
        raise StateDirError(f"State directory {root} is on a read-only filesystem")
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        raise StateDirError(
            f"State directory {root} has {free // 1024} KiB free; the service needs at least "
            f"{MIN_FREE_BYTES >> 20} MiB"
        )
    probe = os.path.join(root, f".write-test-{os.getpid()}")
    try:
        with open(probe, "wb") as stream:
            stream.write(b"\0" * 65536)
            stream.flush()
            os.fsync(stream.fileno())
    finally:
        if os.path.exists(probe):
            os.unlink(probe)


def prepare_state_dir(root: str) -> None:
    """Create the state directory (mode 0700) or make it private, and check it.

    Parameters
    ----------
    root : `str`
        The state directory.

    Raises
    ------
    StateDirError
        If it cannot be created or written, is on a read-only or nearly full
        filesystem, belongs to another user or is a shared (sticky) directory.
    """
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        _check_owner_and_mode(root)
        _check_space(root)
    except OSError as exc:
        raise StateDirError(f"Cannot use state directory {root}: {_describe(exc)}") from exc


def check_token_file(path: str) -> None:
    """Refuse a token file or directory others may write (as ssh does).

    Parameters
    ----------
    path : `str`
        The ``.token`` file; it need not exist yet.

    Raises
    ------
    StateDirError
        If the file or its directory is writable by group or others, or
        belongs to another user.
    """
    for name in (os.path.dirname(path), path):
        try:
            info = os.stat(name)
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != os.getuid():
            raise StateDirError(f"Token {name} belongs to uid {info.st_uid}, not to you; refusing to use it")
        if mode & 0o022:
            raise StateDirError(
                f"Token {name} is writable by group or others (mode {mode:04o}): anyone could replace "
                f"the token; refusing to use it (chmod go-w {name})"
            )
        if name == path and mode & 0o077:
            _LOG.warning("Token file %s is readable by others (mode %04o); chmod 600 it", path, mode)
