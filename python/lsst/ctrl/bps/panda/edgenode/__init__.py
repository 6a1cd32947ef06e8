# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Code that runs on the worker node, not in the submitting process.

Modules here use only the standard library and, when present,
`lsst.resources`: workers may not have ``lsst.ctrl.bps``.
"""
