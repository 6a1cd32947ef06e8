# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""One workflow translated through every site config, by either plugin.

This file imports only ``lsst.ctrl.bps`` (never this package), so that it
runs unchanged in a throwaway venv holding the existing plugin from PyPI.
Run as a script there, it records that plugin's values as the fixture
``existing_plugin.json`` next to this file::

    python3.12 -m venv /tmp/oldplugin-venv
    /tmp/oldplugin-venv/bin/pip install lsst-ctrl-bps-panda==30.2026.4300 \
        lsst-ctrl-bps==30.2026.4300
    git clone https://github.com/lsst/ctrl_bps_panda /tmp/oldplugin-src
    git -C /tmp/oldplugin-src checkout 5aa15dc  # the configs recorded
    PANDA_BEHIND_REAL_LB=1 /tmp/oldplugin-venv/bin/python \\
        tests/data/site_configs/site_config_cases.py /tmp/oldplugin-src

(the existing package's wheel does not ship its ``config/``, so the
checkout gives it its own files through ``CTRL_BPS_PANDA_DIR``). Job
attributes come from the submit file through ctrl_bps's own
``transform._get_job_values``, as ``bps prepare`` sets them, so both
plugins see the same workflow.
``tests/test_site_configs.py`` runs the same cases with this package's
files and compares.
"""

from __future__ import annotations

import json
import os
import re
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
from lsst.ctrl.bps.transform import _get_job_values

_NOT_FROM_CONFIG = frozenset({"name", "label", "cmdvals", "profile", "attrs", "executable", "arguments"})

FIXTURE = Path(__file__).with_name("existing_plugin.json")

# Config file -> the files a submit file includes (overlays go after a site
# config) and the keys it adds (a site for the files that name none).
CASES: dict[str, dict[str, Any]] = {
    "bps_panda.yaml": {
        "includes": ["bps_panda.yaml"],
        "extra": {
            "computeSite": "SOME_SITE",
            "setupLSSTEnv": "source /stack/{LSST_VERSION}/loadLSST.bash; setup lsst_distrib;",
            "jobInitDir": "`pwd`",
            "jobLogDir": "{jobInitDir}",
            "jobContainer": '/bin/bash -c "{payloadCommand}" >&2;',
            "jobCleanup": "",
        },
    },
    "bps_usdf.yaml": {"includes": ["bps_usdf.yaml"], "extra": {}},
    "bps_frdf.yaml": {"includes": ["bps_frdf.yaml"], "extra": {}},
    "bps_ukdf.yaml": {"includes": ["bps_ukdf.yaml"], "extra": {}},
    "bps_idf.yaml": {"includes": ["bps_idf.yaml"], "extra": {}},
    "bps_panda_DF.yaml": {"includes": ["bps_panda_DF.yaml"], "extra": {"computeSite": "SLAC"}},
    "bps_panda_cmd.yaml": {"includes": ["bps_usdf.yaml", "bps_panda_cmd.yaml"], "extra": {}},
    "bps_panda_eventservice.yaml": {
        "includes": ["bps_usdf.yaml", "bps_panda_eventservice.yaml"],
        "extra": {},
    },
    "bps_panda_orderid_map.yaml": {
        "includes": ["bps_usdf.yaml", "bps_panda_orderid_map.yaml"],
        "extra": {},
    },
    "bps_panda_qnode_map.yaml": {"includes": ["bps_usdf.yaml", "bps_panda_qnode_map.yaml"], "extra": {}},
    "bps_remote.yaml": {"includes": ["bps_usdf.yaml", "bps_remote.yaml"], "extra": {}},
}

# What a submit file of an operator sets besides the includes: resources per
# label (requestWalltime in seconds), a label with its own queue at the IDF.
SUBMIT_KEYS: dict[str, Any] = {
    "LSST_VERSION": "w_2026_40",
    "operator": "someone",
    "uniqProcName": "u_someone_run1",
    "requestMemory": 3000,
    "numberOfRetries": 4,
    "pipetask": {
        "label2": {"requestMemory": 8192, "requestCpus": 2, "requestWalltime": 7200, "memoryMultiplier": 2},
        "forcedPhotCoadd": {"requestWalltime": 600, "priority": 700},
    },
    "finalJob": {"requestMemory": 4096},
}

LABELS = ("label1", "label2", "forcedPhotCoadd")
FIELDS = (
    "task_site",
    "task_cloud",
    "task_queue",
    "processingType",
    "task_type",
    "prodSourceLabel",
    "vo",
    "task_priority",
    "maxWalltime",
    "task_rss",
    "core_count",
    "maxAttempt",
)


def write_submit(directory: Path, case: str, prefix: str) -> Path:
    """Write the submit file of a case, including ``<prefix><file>``."""
    values: dict[str, Any] = {
        "includeConfigs": [prefix + name for name in CASES[case]["includes"]],
        "submitPath": str(directory / "submit"),
        **SUBMIT_KEYS,
        **CASES[case]["extra"],
    }
    if case == "bps_panda.yaml":
        values["fileDistributionEndPoint"] = "${LSST_RUN_TEMP_SPACE}/dist/{uniqProcName}/"
    path = directory / "submit.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _job(config: BpsConfig, name: str, label: str, search_opt: dict[str, Any]) -> GenericWorkflowJob:
    """Make a job whose attributes come from the config, as bps does."""
    job = GenericWorkflowJob(name, label)
    for attr, value in _get_job_values(config, search_opt, None).items():
        if attr not in _NOT_FROM_CONFIG and value is not None:
            setattr(job, attr, value)
    return job


def build_workflow(config: BpsConfig) -> GenericWorkflow:
    """Build the workflow ``bps`` would: 2 jobs per label, a final job."""
    workflow = GenericWorkflow("wf")
    pipetask = GenericWorkflowExec("pipetask", "${CTRL_MPEXEC_DIR}/bin/pipetask", False)
    parents: list[str] = []
    for label in LABELS:
        opt = config.get_search_opts(label)
        opt.update({"replaceVars": False, "expandEnvVars": False, "replaceEnvVars": True, "required": False})
        opt["curvals"]["curr_pipetask"] = label
        names = []
        for index in (1, 2):
            job = _job(config, f"{label}_{index}", label, opt)
            job.executable = pipetask
            job.arguments = "run -b {butlerConfig} --qgraph-node-id {qgraphNodeId} --qgraph-id {qgraphId}"
            job.cmdvals = {
                "butlerConfig": "/repo/main",
                "qgraphNodeId": f"n{label}{index}",
                "qgraphId": "qg1",
            }
            workflow.add_job(job, parents or None)
            names.append(job.name)
        parents = names
    opt = {"searchobj": config["finalJob"], "curvals": {}, "default": None}
    final = _job(config, "finalJob", "finalJob", opt)
    final.executable = GenericWorkflowExec("finalJob.bash", "/submit/final_job.bash", True)
    final.arguments = "/repo/main qg1"
    workflow.add_final(final)
    return workflow


def decode_command(executable: str) -> dict[str, Any]:
    """Split a work's command into the runner and the decoded job fields.

    The runner is compared with whitespace runs collapsed (as the shell
    reads it), a ``file://`` distribution URI, also where the runner names
    the job-name map, as its path (this package normalises the endpoint to
    a URI; the site decoder reads both), and the
    files field as the ``key:file`` entries the site decoder delivers (it
    skips keys named in the direct-IO field, e.g. this package's
    ``cmdlineplaceholder:cmdlineplaceholder`` filler for an empty field).
    """
    match = re.search(r"([0-9a-f]{16,}) \$\{IN/L\} (\S+)  (\S*) (\S+)", executable)
    if match is None:
        raise ValueError(f"no encoded command line in {executable!r}")
    runner = executable[: match.start()] + "_cmd_line_" + executable[match.end() :]
    skipped = set(match.group(4).split("+"))
    files = [item for item in match.group(3).split("+") if item and item.split(":")[0] not in skipped]
    return {
        "runner": " ".join(runner.replace("=file://", "=").split()),
        "payload": bytes.fromhex(match.group(1)).decode(),
        "distribution": match.group(2).removeprefix("file://").rstrip("/"),
        "files": sorted(files),
        "direct_io": match.group(4),
    }


def work_fields(task_name: str, work: Any) -> tuple[str, dict[str, Any]]:
    """Return ``label#chunk`` and the compared fields of one work."""
    match = re.fullmatch(r"wf_\d+_(.+)_(\d+)", task_name)
    if match is None:
        raise ValueError(f"unexpected task name {task_name!r}")
    fields = {name: getattr(work, name) for name in FIELDS}
    fields["command"] = decode_command(work.executable)
    return f"{match.group(1)}#{int(match.group(2))}", fields


def translate(service_class: Any, config: BpsConfig, out_prefix: Path) -> dict[str, dict[str, Any]]:
    """Prepare the workflow with a plugin; return the fields of every work."""
    workflow = build_workflow(config)
    prepared = service_class(config).prepare(config, workflow, out_prefix=str(out_prefix))
    idds_workflow = getattr(prepared, "idds_workflow", None) or prepared.idds_client_workflow
    return dict(work_fields(w.task_name, w) for w in idds_workflow.template.works.values())


def run_case(service_class: Any, case: str, prefix: str, directory: Path) -> dict[str, dict[str, Any]]:
    """Load a case's submit file as bps does and translate the workflow."""
    config = BpsConfig(str(write_submit(directory, case, prefix)), defaults=BPS_DEFAULTS)
    (directory / "submit").mkdir(exist_ok=True)
    return translate(service_class, config, directory / "submit")


def main(checkout: str) -> None:
    """Record the existing plugin's values for every case."""
    from lsst.ctrl.bps.panda import PanDAService

    os.environ["CTRL_BPS_PANDA_DIR"] = str(Path(checkout).resolve())
    recorded = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LSST_RUN_TEMP_SPACE"] = f"{tmp}/run_temp"
        for case in CASES:
            directory = Path(tmp) / case
            directory.mkdir()
            works = run_case(PanDAService, case, "${CTRL_BPS_PANDA_DIR}/config/", directory)
            recorded[case] = json.loads(json.dumps(works).replace(tmp, "<TMP>"))
    FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
