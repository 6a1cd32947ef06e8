# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""PanDA/iDDS plugin for the LSST batch processing service."""

__all__ = ["PanDAService", "PandaBpsWmsWorkflow", "__version__"]

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .panda_service import PanDAService
    from .panda_workflow import PandaBpsWmsWorkflow

# Imported on first use (PEP 562): the worker-side decoder
# (python -m lsst.ctrl.bps.panda.edgenode.cmd_line_decoder) and the local
# service must not pull in lsst.ctrl.bps for every job.
_LAZY = {"PanDAService": ".panda_service", "PandaBpsWmsWorkflow": ".panda_workflow"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = version("lsst-ctrl-bps-panda")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"
