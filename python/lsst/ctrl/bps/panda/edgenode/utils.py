# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Compatibility shim: ``download_extract_archive`` for edge-node scripts.

Decoders shipped with LSST stacks import ``download_extract_archive`` to
unpack a custom job's ``jobO.*.tar.gz`` archive; this name keeps that
import working on top of `cmd_line_decoder`, which does the work.
"""

from __future__ import annotations

__all__ = ["download_extract_archive"]

import os
from pathlib import Path

from .cmd_line_decoder import _fetch_archive


def download_extract_archive(filename: str, prefix: str | None = None) -> None:
    """Download a job archive and extract it.

    Parameters
    ----------
    filename : `str`
        URL or path of the archive; a bare name is looked up in
        ``$PANDACACHE_URL/cache`` (or ``$PANDA_URL_SSL/cache``).
    prefix : `str`, optional
        Directory to extract into; the current directory by default.
    """
    _fetch_archive(filename, Path(prefix if prefix is not None else os.getcwd()))
