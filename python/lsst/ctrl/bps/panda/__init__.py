# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""PanDA/iDDS plugin for the LSST batch processing service."""

__all__ = ["PanDAService", "PandaBpsWmsWorkflow", "__version__"]

from importlib.metadata import PackageNotFoundError, version

from .panda_service import PanDAService
from .panda_workflow import PandaBpsWmsWorkflow

try:
    __version__ = version("lsst-ctrl-bps-panda")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"
