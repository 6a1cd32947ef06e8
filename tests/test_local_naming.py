# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Job log directory names of the local service (``local/naming.py``)."""

from __future__ import annotations

import pytest

from lsst.ctrl.bps.panda.local.layout import StateLayout
from lsst.ctrl.bps.panda.local.naming import bps_job_name, safe_component, task_label


@pytest.mark.parametrize(
    ("task", "label"),
    [
        ("u_demo_demo_add_20261206T072836Z_02_add1_01", "add1"),
        ("wf_01_step_1_isr_02", "step_1_isr"),
        ("run_12_label_with_12_inside_03", "label_with_12_inside"),
        ("not a plugin task", "not a plugin task"),
    ],
)
def test_task_label(task: str, label: str) -> None:
    assert task_label(task) == label


def test_bps_job_name_and_directory() -> None:
    pseudo = "0a1b_add2_2+qgraphNodeId:0a1b+qgraphId:"
    assert bps_job_name(pseudo) == "0a1b_add2_2"
    assert bps_job_name("pure_pseudoinput+qgraphNodeId:+qgraphId:") == "pure_pseudoinput"
    path = StateLayout("/state").attempt_dir(7, "run_03_add2_01", pseudo, 2)
    assert path == "/state/jobs/7/add2/0a1b_add2_2/attempt_2"


def test_unsafe_and_long_names_stay_one_distinct_component() -> None:
    assert safe_component("../a/b c", "x") == "_a_b_c"
    assert safe_component("..", "x") == "_"
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    layout = StateLayout("/s")
    dir_a = layout.attempt_dir(1, "r_01_l_01", long_a, 1)
    dir_b = layout.attempt_dir(1, "r_01_l_01", long_b, 1)
    assert dir_a != dir_b
    assert all(len(part) <= 210 for part in dir_a.split("/"))
