# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Record how the existing PanDA plugin translates event-service settings.

Run as ``tests/data/existing_plugin_recording.py`` says (with the existing
plugin; no service needed).

It translates the small workflow of `build_workflow` under each scenario of
`SCENARIOS` with the existing plugin's ``add_idds_work`` and writes, per
work, the event-service fields of its ``DomaPanDAWork`` (``es``,
``es_label``, ``max_events_per_job``, ``maxWalltime``, ``es_files``, the
dependency map) plus the files staged and the order-id map, to
``existing_plugin.json`` next to this file. ``tests/test_event_service.py``
builds the same workflow and compares this package's translation with it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import (
    BPS_DEFAULTS,
    BpsConfig,
    GenericWorkflow,
    GenericWorkflowExec,
    GenericWorkflowJob,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/data: the module below
from existing_plugin_recording import existing_plugin_version, write_recording

LABELS = {"isr": 5, "calib": 3, "merge": 1}
"""Labels of the workflow and their job counts (isr -> calib -> merge)."""

RUNNER = "bash ./decoder.sh _cmd_line_ orderIdMapFilename"
"""Runner command of both plugins in the recording (the map token kept)."""

SCENARIOS: dict[str, dict[str, Any]] = {
    "labels": {
        "config": {"enableEventService": "isr:2, calib", "maxPayloadsPerPandaJob": 3},
        "walltime": {},
    },
    "walltime": {
        "config": {"enableEventService": "isr,calib:4", "maxWmsJobWalltime": 3600},
        "walltime": {"isr": 1200, "calib": 2400, "merge": 600},
    },
    "walltime_no_request": {
        "config": {"enableEventService": "isr", "maxWmsJobWalltime": 7200},
        "walltime": {},
    },
    "label_n_with_walltime": {
        "config": {"enableEventService": "calib:2"},
        "walltime": {"calib": 900},
    },
    "off": {"config": {}, "walltime": {"isr": 600}},
}
"""Name -> submit keys and requestWalltime (seconds) per label."""

TMP = "<tmp>"
"""Stands for the scratch directory in the recording."""


def build_workflow(name: str, walltime: dict[str, int]) -> GenericWorkflow:
    """Return the recorded workflow: isr (5 jobs) -> calib (3) -> merge (1).

    Parameters
    ----------
    name : `str`
        Workflow name (the run name).
    walltime : `dict` [`str`, `int`]
        ``request_walltime`` of the jobs of some labels.

    Returns
    -------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow; calib job ``i`` depends on isr jobs ``i`` and ``i+1``,
        merge on every calib job.
    """
    workflow = GenericWorkflow(name)
    exe = GenericWorkflowExec("run.sh", "/bin/echo", False)
    names: dict[str, list[str]] = {}
    for label, count in LABELS.items():
        names[label] = []
        for index in range(count):
            job_name = f"{label}_{index}"
            job = GenericWorkflowJob(job_name, label=label, executable=exe)
            job.arguments = f"{label} {{qgraphNodeId}}"
            job.cmdvals = {"qgraphNodeId": f"node{label}{index}"}
            job.request_walltime = walltime.get(label)
            job.request_memory = 2048
            job.request_cpus = 1
            job.number_of_retries = 3
            job.compute_site = "SITE"
            workflow.add_job(job)
            names[label].append(job_name)
    for index, calib in enumerate(names["calib"]):
        workflow.add_job_relationships(names["isr"][index : index + 2], [calib])
    workflow.add_job_relationships(names["calib"], names["merge"])
    return workflow


def _config(tmp: str, name: str, values: dict[str, Any]) -> BpsConfig:
    base = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "computeSite": "SITE",
        "fileDistributionEndPoint": f"{tmp}/dist/",
        "submitPath": f"{tmp}/{name}",
        "uniqProcName": name,
        "runnerCommand": RUNNER,
        "bps_defined": {"uniqProcName": name},
    }
    base.update(values)
    os.makedirs(base["submitPath"], exist_ok=True)
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as stream:
        yaml.safe_dump(base, stream)
    return BpsConfig(path, defaults=BPS_DEFAULTS)


def _runner_tail(executable: str) -> list[str]:
    """Return the runner command's words after ``${IN/L}`` (endpoint,
    files, direct-I/O files, then the rest of the runner command)."""
    words = executable.split()
    return words[words.index("${IN/L}") + 1 :]


def work_record(work: Any) -> dict[str, Any]:
    """Return the recorded event-service fields of one work."""
    return {
        "task_name": work.task_name,
        "es": work.es,
        "es_label": work.es_label,
        "max_events_per_job": work.max_events_per_job,
        "maxWalltime": work.maxWalltime,
        "es_files": work.es_files,
        "dependency_map": work.dependency_map,
        "runner_tail": _runner_tail(work.executable),
    }


def record(name: str, scenario: dict[str, Any], tmp: str) -> dict[str, Any]:
    """Translate the workflow under one scenario with the existing plugin.

    Parameters
    ----------
    name : `str`
        Scenario name (the run name).
    scenario : `dict` [`str`, `~typing.Any`]
        ``config`` and ``walltime`` of the scenario.
    tmp : `str`
        Scratch directory.

    Returns
    -------
    recorded : `dict` [`str`, `~typing.Any`]
        Works, files staged and the order-id map.
    """
    from idds.workflowv2.workflow import Workflow

    from lsst.ctrl.bps.panda.utils import add_idds_work

    config = _config(tmp, name, scenario["config"])
    workflow = Workflow(name=name)
    staged, _, _ = add_idds_work(config, build_workflow(name, scenario["walltime"]), workflow)
    order_map_path = os.path.join(config["submitPath"], "panda_order_id_map.json")
    order_map = None
    if os.path.exists(order_map_path):
        with open(order_map_path) as stream:
            order_map = json.load(stream)
    return {
        "config": scenario["config"],
        "walltime": scenario["walltime"],
        "works": [work_record(work) for work in workflow.template.works.values()],
        "staged": sorted(staged),
        "order_id_map": order_map,
    }


def main() -> None:
    """Record every scenario into ``existing_plugin.json``."""
    recorded: dict[str, Any] = {"plugin_version": existing_plugin_version(), "scenarios": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in SCENARIOS.items():
            recorded["scenarios"][name] = record(name, scenario, tmp)
        write_recording(__file__, recorded, indent=1, replace=(tmp, TMP))


if __name__ == "__main__":
    main()
