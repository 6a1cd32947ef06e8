# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Shared helpers of the prepare tests: configs, settings, map readers."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig, GenericWorkflow, GenericWorkflowExec, GenericWorkflowJob
from lsst.ctrl.bps.panda.panda_workflow import PandaBpsWmsWorkflow, workflow_labels
from lsst.ctrl.bps.panda.request_encoding import EncodedRequest, encode_request
from lsst.ctrl.bps.panda.service_settings import ServiceSettings
from lsst.ctrl.bps.panda.workflow_plan import WorkflowPlan, plan_workflow


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


@dataclass(frozen=True)
class Translation:
    """A workflow planned and encoded, as prepare does it."""

    plan: WorkflowPlan
    request: EncodedRequest

    @property
    def idds_workflow(self) -> Any:
        return self.request.workflow

    @property
    def files_to_stage(self) -> dict[str, str]:
        return self.plan.files_to_stage

    @property
    def tasks(self) -> dict[str, Any]:
        return self.plan.tasks

    @property
    def order_id_map(self) -> dict[str, dict[str, str]] | None:
        return self.plan.order_id_map

    @property
    def qnode_map(self) -> dict[str, str] | None:
        return self.plan.qnode_map


def translate(
    settings: ServiceSettings, workflow: GenericWorkflow, max_request_length: int = 0
) -> Translation:
    """Plan and encode a workflow (the prepare pipeline without files)."""
    plan = plan_workflow(settings, workflow)
    return Translation(plan, encode_request(plan, max_request_length))


def generate(tmp_path: Path, workflow: GenericWorkflow, text: str = "", **values: Any) -> Translation:
    """Translate a workflow with settings from `make_config`."""
    settings = ServiceSettings.from_config(make_config(tmp_path, text, **values), workflow_labels(workflow))
    return translate(settings, workflow)


def staged_files(tmp_path: Path, workflow: GenericWorkflow, text: str = "", **values: Any) -> dict[str, str]:
    """Prepare a workflow as ``bps`` does; return the files submit stages."""
    config = make_config(tmp_path, text, **values)
    prepared = PandaBpsWmsWorkflow.from_generic_workflow(config, workflow, None, "PanDAService")
    return prepared.files_to_stage


def works(generated: Translation) -> list[Any]:
    """Return the works of a translated workflow, in order."""
    return list(generated.idds_workflow.template.works.values())


def entries(generated: Translation) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return every dependency-map entry by name, with its task name."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for work in works(generated):
        for entry in work.dependency_map:
            assert entry["name"] not in found, entry["name"]
            found[entry["name"]] = (work.task_name, entry)
    return found


def split_label_workflow(log: str = "/dev/null", slow: str = "0") -> GenericWorkflow:
    """Label ``split``: jobs ``s0``..``s5``; ``s0``-``s2`` feed label
    ``child`` (one job each), ``s3``-``s5`` have no children; a final job.

    Every job appends ``start <id> <time>`` and ``end <id> <time>`` to
    ``log`` and sleeps ``<id>`` seconds in between; the id travels as the
    job's ``qgraphNodeId`` so all jobs of a label share one command (one
    task key). ``s5``'s id is ``slow``; the final job appends
    ``final <time>``.
    """
    stamp = "$(date +%s.%N)"
    node = "{qgraphNodeId}"
    args = f"-c 'echo start {node} {stamp} >> {log}; sleep {node}; echo end {node} {stamp} >> {log}'"
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("sh", "/bin/sh", False)

    def job(name: str, label: str, node_id: str) -> GenericWorkflowJob:
        cmdvals = {"qgraphNodeId": node_id, "qgraphId": "q"}
        return GenericWorkflowJob(name, label=label, executable=exe, arguments=args, cmdvals=cmdvals)

    for i in range(6):
        workflow.add_job(job(f"s{i}", "split", slow if i == 5 else f"0.0{i}"))
    for i in range(3):
        workflow.add_job(job(f"c{i}", "child", f"0.1{i}"), [f"s{i}"])
    final_args = f"-c 'echo final {stamp} >> {log}'"
    workflow.add_final(GenericWorkflowJob("finalJob", label="finalJob", executable=exe, arguments=final_args))
    return workflow
