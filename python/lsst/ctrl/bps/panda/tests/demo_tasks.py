# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The demo pipeline's task that reads a file at run time.

`GainCheckedAddTask` is pipe_base's ``AddTask`` that, when ``gainTable`` is
set, first looks its detector up in that table (lines ``<detector> <gain>``)
and fails with a clear message when the gain is missing or not a positive
number. The demo's failing variant (``demo/bps_fail.yaml``) points it at
``detector_gains.txt`` of the demo repo, where detector 2's gain is
``n/a``: fixing that line and restarting the run makes it succeed. Shipped in
the package so that jobs import it wherever the plugin is installed; needs
the ``demo`` extra (``lsst-pipe-base``).
"""

from __future__ import annotations

__all__ = ["GainCheckedAddTask", "GainCheckedAddTaskConfig", "read_gain"]

from typing import Any

from lsst.pex.config import Field
from lsst.pipe.base.tests.simpleQGraph import AddTask, AddTaskConfig


def read_gain(path: str, detector: int) -> float:
    """Return a detector's gain from a gain table.

    Parameters
    ----------
    path : `str`
        Text file of ``<detector> <gain>`` lines (``#`` starts a comment).
    detector : `int`
        The detector.

    Returns
    -------
    gain : `float`
        Its gain.

    Raises
    ------
    ValueError
        If the detector has no line, or its gain is not a positive number.
    """
    with open(path) as stream:
        for number, line in enumerate(stream, start=1):
            fields = line.split("#", 1)[0].split()
            if len(fields) != 2 or fields[0] != str(detector):
                continue
            try:
                gain = float(fields[1])
            except ValueError:
                gain = 0.0
            if gain <= 0:
                raise ValueError(
                    f"Detector {detector} has no usable gain in {path} (line {number}: {line.strip()!r}); "
                    "put a positive number there"
                )
            return gain
    raise ValueError(f"Detector {detector} is missing from the gain table {path}")


class GainCheckedAddTaskConfig(AddTaskConfig):
    """Config of `GainCheckedAddTask`."""

    gainTable = Field[str](doc="Gain table to check the detector in; empty: no check.", default="")


class GainCheckedAddTask(AddTask):
    """``AddTask`` that first checks its detector's gain (see module)."""

    ConfigClass = GainCheckedAddTaskConfig
    _DefaultName = "gain_checked_add_task"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        # Docstring inherited from PipelineTask.runQuantum.
        table = getattr(self.config, "gainTable", "")
        if table:
            gain = read_gain(table, int(butlerQC.quantum.dataId["detector"]))
            self.log.info("Detector %s gain %s (from %s)", butlerQC.quantum.dataId["detector"], gain, table)
        super().runQuantum(butlerQC, inputRefs, outputRefs)
