# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The ``ctrl_bps_panda_dir`` console script: where the site configs are.

Submit files written for the LSST stack include site configs as
``${CTRL_BPS_PANDA_DIR}/config/<name>.yaml``. ``setup lsst_distrib`` sets
that variable; after a ``pip install`` of this package set it with::

    export CTRL_BPS_PANDA_DIR=$(ctrl_bps_panda_dir)

The same files are also reachable as
``resource://lsst.ctrl.bps.panda/config/<name>.yaml``.
"""

from __future__ import annotations

__all__ = ["CONFIG_RESOURCE_PREFIX", "install_dir", "main"]

from pathlib import Path

CONFIG_RESOURCE_PREFIX = "resource://lsst.ctrl.bps.panda/config/"
"""Prefix of the packaged site configs as lsst-resources URIs."""


def install_dir() -> Path:
    """Return the directory whose ``config/`` holds the site configs.

    Returns
    -------
    path : `pathlib.Path`
        The installed ``lsst/ctrl/bps/panda`` package directory (for an
        editable install, the one in the source tree).
    """
    return Path(__file__).resolve().parent.parent


def main() -> None:
    """Print the directory to use as ``CTRL_BPS_PANDA_DIR``."""
    print(install_dir())
