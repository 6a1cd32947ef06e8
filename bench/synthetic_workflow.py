# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""A synthetic, bps-shaped `GenericWorkflow` of any size for benchmarks.

The shape follows what ``bps transform`` produces for a DRP-like pipeline:
a ``pipetaskInit`` job, then repeated *blocks* of 84 jobs: 8 exposures, each
running a 10-label per-exposure chain with two diamonds (fan-in 2), followed
by 4 coadd-level labels whose first and third jobs fan in from all 8
exposures of the block. That is 14 science labels plus ``pipetaskInit``.
Jobs carry lazy command lines (``--qgraph-node-id {qgraphNodeId}`` with a
per-job UUID in ``cmdvals``), read the run's quantum graph file (a real file
written next to the workflow, to be staged by the plugin) and a final job
runs ``final_job.bash`` after everything.

The builder is deterministic: the same ``n_jobs`` always gives the same
workflow, so separate processes (and other implementations) can rebuild it
instead of sharing a pickle.
"""

from __future__ import annotations

__all__ = ["COADD_LABELS", "EXPOSURE_LABELS", "JOBS_PER_BLOCK", "build_workflow"]

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowExec, GenericWorkflowFile, GenericWorkflowJob

# label -> parent labels within one exposure (chain + two diamonds).
EXPOSURE_LABELS: dict[str, tuple[str, ...]] = {
    "isr": ("pipetaskInit",),
    "characterizeImage": ("isr",),
    "calibrate": ("characterizeImage",),
    "writeSourceTable": ("calibrate",),
    "makeWarp": ("calibrate",),
    "transformSourceTable": ("writeSourceTable",),
    "consolidateSourceTable": ("transformSourceTable", "makeWarp"),
    "skyCorr": ("calibrate",),
    "consolidateVisitSummary": ("consolidateSourceTable", "skyCorr"),
    "finalizeCharacterization": ("consolidateVisitSummary",),
}

# label -> (parent label, whether it fans in from every exposure of the block).
COADD_LABELS: dict[str, tuple[str, bool]] = {
    "assembleCoadd": ("makeWarp", True),
    "detection": ("assembleCoadd", False),
    "mergeDetections": ("finalizeCharacterization", True),
    "deblend": ("mergeDetections", False),
}

EXPOSURES_PER_BLOCK = 8
JOBS_PER_BLOCK = EXPOSURES_PER_BLOCK * len(EXPOSURE_LABELS) + len(COADD_LABELS)

_ARGUMENTS = "{runPreCmdOpts} run-qbb {butlerConfig} <FILE:runQgraphFile> --qgraph-node-id {qgraphNodeId}"
_CMDVALS = {"runPreCmdOpts": "--long-log --log-level=VERBOSE", "butlerConfig": "/repo/main/butler.yaml"}
_MEMORY = {"isr": 4096, "characterizeImage": 4096, "calibrate": 6144, "assembleCoadd": 16384}
_QGRAPH_BYTES = 256 * 1024


class _Builder:
    """Adds jobs to one workflow with shared per-label objects.

    Parameters
    ----------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow to fill.
    qgraph : `lsst.ctrl.bps.GenericWorkflowFile`
        The run quantum graph file every job reads.
    """

    def __init__(self, workflow: GenericWorkflow, qgraph: GenericWorkflowFile) -> None:
        self.workflow = workflow
        self.qgraph = qgraph
        self.executable = GenericWorkflowExec("pipetask", "${CTRL_MPEXEC_DIR}/bin/pipetask", False)
        self._rng = uuid.UUID(int=0x5EED).int

    def _node_id(self) -> str:
        """Return the next deterministic quantum UUID."""
        self._rng = (self._rng * 6364136223846793005 + 1442695040888963407) % (1 << 128)
        return str(uuid.UUID(int=self._rng))

    def add(self, name: str, label: str, parents: list[str], tags: dict[str, Any]) -> None:
        """Add one payload job.

        Parameters
        ----------
        name : `str`
            Job name.
        label : `str`
            Job label.
        parents : `list` [`str`]
            Names of the parent jobs (already added).
        tags : `dict` [`str`, `~typing.Any`]
            Data-id tags.
        """
        job = GenericWorkflowJob(
            name,
            label=label,
            executable=self.executable,
            arguments=_ARGUMENTS,
            cmdvals=dict(_CMDVALS, qgraphNodeId=self._node_id()),
            quanta_counts=Counter({label: 1}),
            tags=tags,
            request_memory=_MEMORY.get(label, 2048),
            request_cpus=1,
            number_of_retries=3,
        )
        self.workflow.add_job(job, parents)
        self.workflow.add_job_inputs(name, self.qgraph)

    def add_block(self, block: int) -> None:
        """Add the 84 jobs of one block.

        Parameters
        ----------
        block : `int`
            Block number (used for visit and patch ids).
        """
        names: dict[str, list[str]] = {label: [] for label in EXPOSURE_LABELS}
        for detector in range(EXPOSURES_PER_BLOCK):
            tags = {"visit": 100000 + block, "detector": detector}
            for label, parent_labels in EXPOSURE_LABELS.items():
                name = f"{label}_{100000 + block}_{detector}"
                parents = [
                    "pipetaskInit" if p == "pipetaskInit" else f"{p}_{100000 + block}_{detector}"
                    for p in parent_labels
                ]
                self.add(name, label, parents, tags)
                names[label].append(name)
        for label, (parent_label, fan_in) in COADD_LABELS.items():
            name = f"{label}_9813_{block}"
            parents = names[parent_label] if fan_in else [f"{parent_label}_9813_{block}"]
            self.add(name, label, parents, {"tract": 9813, "patch": block})


def _write_qgraph(work_dir: Path) -> GenericWorkflowFile:
    """Write the run quantum graph file and describe it as bps does.

    Parameters
    ----------
    work_dir : `pathlib.Path`
        Directory for the file.

    Returns
    -------
    gwfile : `lsst.ctrl.bps.GenericWorkflowFile`
        The ``runQgraphFile`` entry.
    """
    path = work_dir / "bench_run.qg"
    if not path.exists() or path.stat().st_size != _QGRAPH_BYTES:
        path.write_bytes(bytes(range(256)) * (_QGRAPH_BYTES // 256))
    return GenericWorkflowFile(
        "runQgraphFile", src_uri=str(path), wms_transfer=True, job_access_remote=True, job_shared=True
    )


def _add_final(workflow: GenericWorkflow, qgraph: GenericWorkflowFile, work_dir: Path) -> None:
    """Add the final job (``finalJob.whenRun: ALWAYS``) as bps does.

    Parameters
    ----------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.
    qgraph : `lsst.ctrl.bps.GenericWorkflowFile`
        The run quantum graph file.
    work_dir : `pathlib.Path`
        Directory for the final script.
    """
    script = work_dir / "final_job.bash"
    script.write_text("#!/bin/bash\nset -e\nqgraphFile=$1\nbutlerConfig=$2\necho final $qgraphFile\n")
    script.chmod(0o755)
    final = GenericWorkflowJob(
        "finalJob",
        label="finalJob",
        executable=GenericWorkflowExec("final_job.bash", str(script), True),
        arguments="<FILE:runQgraphFile> /repo/main/butler.yaml",
        request_memory=2048,
        request_cpus=1,
    )
    workflow.add_job_inputs(final.name, qgraph)
    workflow.add_final(final)


def build_workflow(n_jobs: int, work_dir: Path, name: str | None = None) -> GenericWorkflow:
    """Build a synthetic workflow of exactly ``n_jobs`` jobs plus a final job.

    Parameters
    ----------
    n_jobs : `int`
        Number of jobs in the graph (``pipetaskInit`` included, final job
        excluded); at least 2.
    work_dir : `pathlib.Path`
        Existing directory for the quantum graph file and final script.
    name : `str`, optional
        Workflow name; ``bench_<n_jobs>`` by default.

    Returns
    -------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow, with ``run_attrs`` as bps sets them.
    """
    if n_jobs < 2:
        raise ValueError(f"n_jobs must be at least 2, got {n_jobs}")
    workflow = GenericWorkflow(name or f"bench_{n_jobs}")
    qgraph = _write_qgraph(work_dir)
    workflow.add_file(qgraph)
    builder = _Builder(workflow, qgraph)
    builder.add("pipetaskInit", "pipetaskInit", [], {})
    blocks, extra = divmod(n_jobs - 1, JOBS_PER_BLOCK)
    for block in range(blocks):
        builder.add_block(block)
    for index in range(extra):
        builder.add(f"isr_99999_{index}", "isr", ["pipetaskInit"], {"visit": 99999, "detector": index})
    _add_final(workflow, qgraph, work_dir)
    workflow.run_attrs.update(
        {"bps_isjob": "True", "bps_project": "bench", "bps_campaign": "bench", "bps_run": workflow.name}
    )
    workflow.run_attrs.update({"bps_operator": "bench", "bps_payload": "bench", "bps_runsite": "BENCH"})
    return workflow
