# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Shared helpers of the prepare tests: configs, settings, map readers."""

from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig, GenericWorkflow
from lsst.ctrl.bps.panda.idds_workflow_generator import GeneratedWorkflow, IDDSWorkflowGenerator
from lsst.ctrl.bps.panda.panda_workflow import workflow_labels
from lsst.ctrl.bps.panda.task_settings import ServiceSettings


def make_config(tmp_path: Path, text: str = "", **values: Any) -> BpsConfig:
    """Write a submit YAML (base keys + overrides, None removes) and load
    it the way ``bps`` does (ctrl_bps defaults, then the plugin's)."""
    base: dict[str, Any] = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "computeSite": "SITE",
        "fileDistributionEndPoint": f"{tmp_path}/dist",
        "submitPath": f"{tmp_path}/submit",
        "uniqProcName": "run1",
    }
    base.update(values)
    base = {key: value for key, value in base.items() if value is not None}
    path = tmp_path / "submit.yaml"
    path.write_text(yaml.safe_dump(base) + text)
    return BpsConfig(str(path), defaults=BPS_DEFAULTS)


def generate(tmp_path: Path, workflow: GenericWorkflow, text: str = "", **values: Any) -> GeneratedWorkflow:
    """Translate a workflow with settings from `make_config`."""
    settings = ServiceSettings.from_config(make_config(tmp_path, text, **values), workflow_labels(workflow))
    return IDDSWorkflowGenerator(settings, workflow).build()


def works(generated: GeneratedWorkflow) -> list[Any]:
    """Return the works of a generated workflow, in order."""
    return list(generated.idds_workflow.template.works.values())


def entries(generated: GeneratedWorkflow) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return every dependency-map entry by name, with its task name."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for work in works(generated):
        for entry in work.dependency_map:
            assert entry["name"] not in found, entry["name"]
            found[entry["name"]] = (work.task_name, entry)
    return found
