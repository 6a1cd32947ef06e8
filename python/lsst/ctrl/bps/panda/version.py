# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Compatibility module: ``lsst.ctrl.bps.panda.version.__version__``.

The LSST build of the existing plugin generates this module; here the
version is the installed distribution's (`lsst.ctrl.bps.panda.__version__`).
"""

__all__ = ["__version__"]

from . import __version__
