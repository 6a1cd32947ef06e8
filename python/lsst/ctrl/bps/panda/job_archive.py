# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Job archives for the PanDA cache (``jobO.<uuid>.tar.gz``).

Custom jobs (``bps submitcmd``) and remote builds ship their files to the
workers in one gzipped tar archive uploaded to the PanDA cache; the
edge-node decoder extracts it into the job's working directory when the
decoder's fifth argument names it (it contains ``jobO``).
"""

from __future__ import annotations

__all__ = ["ARCHIVE_PREFIX", "new_archive_name", "write_job_archive"]

import logging
import os
import tarfile
import uuid
from collections.abc import Mapping

from .exceptions import PanDABpsError

_LOG = logging.getLogger(__name__)

ARCHIVE_PREFIX = "jobO."
"""Start of every archive name; the decoder recognises archives by ``jobO``."""


def new_archive_name() -> str:
    """Return a fresh archive name.

    Returns
    -------
    name : `str`
        ``jobO.<uuid4>.tar.gz``.
    """
    return f"{ARCHIVE_PREFIX}{uuid.uuid4()}.tar.gz"


def write_job_archive(path: str, members: Mapping[str, str]) -> str:
    """Write a gzipped tar archive (symbolic links followed).

    Parameters
    ----------
    path : `str`
        Archive to write.
    members : `~collections.abc.Mapping` [`str`, `str`]
        Name in the archive (a base name; a trailing ``/`` marks a
        directory) to local source path.

    Returns
    -------
    path : `str`
        The archive written.

    Raises
    ------
    PanDABpsError
        Raised naming the file if a member cannot be read.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with tarfile.open(path, "w:gz", dereference=True) as archive:
            for name, source in members.items():
                archive.add(source.removeprefix("file://"), arcname=name.rstrip("/"))
    except OSError as exc:
        raise PanDABpsError(f"Cannot write job archive {path}: {exc}") from exc
    _LOG.info("Wrote job archive %s (%d file(s))", path, len(members))
    return path
