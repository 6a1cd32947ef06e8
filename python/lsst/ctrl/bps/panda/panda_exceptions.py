# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Compatibility module: the existing plugin's authentication errors.

Code that imports them from ``lsst.ctrl.bps.panda.panda_exceptions`` gets
the classes of `lsst.ctrl.bps.panda.exceptions` (so ``except`` clauses catch
what this package raises). They derive from `lsst.ctrl.bps.BpsError` through
`~lsst.ctrl.bps.panda.exceptions.PanDABpsError` here, not from `Exception`
directly.
"""

__all__ = [
    "AuthConfigError",
    "PandaAuthError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenRefreshError",
    "TokenTooEarlyError",
]

from .exceptions import (
    AuthConfigError,
    PandaAuthError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenRefreshError,
    TokenTooEarlyError,
)
