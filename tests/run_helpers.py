# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Small runnable workflows and a local-service environment for fault tests.

`shell_workflow` builds a `GenericWorkflow` whose jobs run a shell command
(``/bin/sh -c``) on the local PanDA service; `prepare` writes a submit YAML
on top of ``config/bps_local.yaml`` and runs ``PanDAService.prepare``, as
``bps submit`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import (
    BPS_DEFAULTS,
    BpsConfig,
    GenericWorkflow,
    GenericWorkflowExec,
    GenericWorkflowFile,
    GenericWorkflowJob,
)
from lsst.ctrl.bps.panda import PanDAService

LOCAL_OVERLAY = Path(__file__).resolve().parents[1] / "config" / "bps_local.yaml"

# Variables of the client environment a test takes from ``panda-local env``.
CLIENT_VARIABLES = ("PANDA_URL", "PANDA_URL_SSL", "PANDA_AUTH", "PANDA_AUTH_VO", "PANDA_CONFIG_ROOT")


def shell_workflow(
    name: str,
    commands: dict[str, str],
    label: str = "work",
    cmdvals: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
) -> GenericWorkflow:
    """Return a workflow of independent jobs, each running a shell command.

    Parameters
    ----------
    name : `str`
        Workflow (and iDDS request) name.
    commands : `dict` [`str`, `str`]
        Job name to the ``sh -c`` command it runs.
    label : `str`, optional
        Label of every job.
    cmdvals : `dict`, optional
        Command values of every job (``{qgraphNodeId}`` is in each
        command line, as bps writes it).
    inputs : `dict` [`str`, `str`], optional
        File key to local path of inputs every job gets (transferred to
        the distribution endpoint; ``<FILE:key>`` in a command names it).

    Returns
    -------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.
    """
    workflow = GenericWorkflow(name)
    shell = GenericWorkflowExec("sh", "/bin/sh", False)
    for job_name, command in commands.items():
        quoted = command.replace("'", "'\"'\"'")
        job = GenericWorkflowJob(
            job_name,
            label=label,
            executable=shell,
            arguments=f"-c '{quoted}' {{qgraphNodeId}}",
            cmdvals={"qgraphNodeId": f"node-{len(workflow)}", **(cmdvals or {})},
            request_memory=100,
            request_cpus=1,
            number_of_retries=0,
        )
        workflow.add_job(job)
        files = [
            GenericWorkflowFile(key, src_uri=src, wms_transfer=True) for key, src in (inputs or {}).items()
        ]
        for gwfile in files:
            workflow.add_file(gwfile)
        if files:
            workflow.add_job_inputs(job_name, files)
    return workflow


def bps_config(tmp_path: Path, run_name: str, **values: Any) -> BpsConfig:
    """Load a submit YAML for the local service the way ``bps`` does.

    Parameters
    ----------
    tmp_path : `pathlib.Path`
        Directory for the YAML, the submit directory and the endpoint.
    run_name : `str`
        ``uniqProcName``.
    **values : `typing.Any`
        Keys to set (`None` removes a key).

    Returns
    -------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    """
    base: dict[str, Any] = {
        "includeConfigs": [str(LOCAL_OVERLAY)],
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "fileDistributionEndPoint": f"file://{tmp_path}/dist/{{uniqProcName}}/",
        "submitPath": f"{tmp_path}/submit/{run_name}",
        "uniqProcName": run_name,
    }
    base.update(values)
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in base.items() if value is not None}))
    return BpsConfig(str(path), defaults=BPS_DEFAULTS)


def prepare(tmp_path: Path, workflow: GenericWorkflow, **values: Any) -> tuple[PanDAService, Any]:
    """Prepare a workflow for the local service; return service and run.

    Parameters
    ----------
    tmp_path : `pathlib.Path`
        Working directory of the test.
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow (its name is the run name).
    **values : `typing.Any`
        Submit YAML keys to set.

    Returns
    -------
    service : `lsst.ctrl.bps.panda.PanDAService`
        The service.
    prepared : `lsst.ctrl.bps.panda.PandaBpsWmsWorkflow`
        The prepared run (submit directory written).
    """
    config = bps_config(tmp_path, workflow.name, **values)
    service = PanDAService(config)
    submit_path = config["submitPath"]
    os.makedirs(submit_path, exist_ok=True)
    return service, service.prepare(config, workflow, submit_path)
