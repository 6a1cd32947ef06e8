# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""A local, wire-compatible PanDA relay + iDDS + PanDA that runs jobs here.

Run it with the ``panda-local`` console script. This subpackage imports
nothing from the plugin side except `lsst.ctrl.bps.panda.constants`.
"""
