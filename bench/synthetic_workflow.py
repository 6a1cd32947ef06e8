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

Two shapes share that graph and differ in what each job carries:

``realistic`` (the default)
    Jobs are named as ``bps transform`` names them with its default
    ``templateDataId`` and ``useNodeIdInClusterName``: ``{quantum uuid}_``
    ``{label}_{tract}_{patch}_{band}_{visit}_{exposure}_{detector}``
    with the absent dimensions dropped and runs of ``_`` collapsed, e.g.
    ``9f1c…_calibrate_2026120600042_17`` or ``…_assembleCoadd_9813_42_i_``
    (60 to 80 characters). Each job carries the ``cmdvals`` bps leaves after
    ``_enhance_command`` for the default ``runQuantumCommand`` (every
    ``{name}`` of its arguments: ``runPreCmdOpts``, ``butlerConfig``,
    ``fileDistributionEndPoint``, ``qgraphNodeId``,
    ``extraRunQuantumOptions``), and data-id tags.
``short``
    The first benchmark's shape (kept to compare with its figures):
    ``{label}_{visit}_{detector}`` names of about 20 characters and a
    shorter command line.

The builder is deterministic: the same ``n_jobs`` and shape always give the
same workflow, so separate processes (and other implementations) can
rebuild it instead of sharing a pickle.
"""

from __future__ import annotations

__all__ = ["COADD_LABELS", "EXPOSURE_LABELS", "JOBS_PER_BLOCK", "SHAPES", "build_workflow"]

import re
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
SHAPES = ("realistic", "short")

# Labels whose quanta are per exposure (the rest of EXPOSURE_LABELS are per
# visit), and coadd labels without a band dimension.
_EXPOSURE_DIM_LABELS = frozenset({"isr"})
_BANDLESS_LABELS = frozenset({"mergeDetections", "deblend"})
_BANDS = "ugrizy"
_DETECTORS = 189
_FIRST_VISIT = 2026120600000

_SHORT_ARGUMENTS = (
    "{runPreCmdOpts} run-qbb {butlerConfig} <FILE:runQgraphFile> --qgraph-node-id {qgraphNodeId}"
)
_SHORT_CMDVALS = {"runPreCmdOpts": "--long-log --log-level=VERBOSE", "butlerConfig": "/repo/main/butler.yaml"}
# bps's default runQuantumCommand after _enhance_command (lazy commands,
# run quantum graph): every {name} left in the arguments has a cmdvals entry.
_REALISTIC_ARGUMENTS = (
    "{runPreCmdOpts} run-qbb {butlerConfig} {fileDistributionEndPoint}<FILE:runQgraphFile>"
    " --qgraph-node-id {qgraphNodeId} {extraRunQuantumOptions}"
)
_REALISTIC_CMDVALS = {
    "runPreCmdOpts": "--long-log --log-level=VERBOSE",
    "butlerConfig": "s3://embargo@rubin-summit-users/butler.yaml",
    "fileDistributionEndPoint": "s3://rubin-panda-cache/bench/",
    "extraRunQuantumOptions": "--no-raise-on-partial-outputs",
}
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
    shape : `str`
        One of `SHAPES`.
    """

    def __init__(self, workflow: GenericWorkflow, qgraph: GenericWorkflowFile, shape: str) -> None:
        self.workflow = workflow
        self.qgraph = qgraph
        self.realistic = shape == "realistic"
        self.arguments = _REALISTIC_ARGUMENTS if self.realistic else _SHORT_ARGUMENTS
        self.cmdvals = _REALISTIC_CMDVALS if self.realistic else _SHORT_CMDVALS
        self.executable = GenericWorkflowExec("pipetask", "${CTRL_MPEXEC_DIR}/bin/pipetask", False)
        self._rng = uuid.UUID(int=0x5EED).int

    def _node_id(self) -> str:
        """Return the next deterministic quantum UUID."""
        self._rng = (self._rng * 6364136223846793005 + 1442695040888963407) % (1 << 128)
        return str(uuid.UUID(int=self._rng))

    def _name(self, node_id: str, label: str, tags: dict[str, Any]) -> str:
        """Return the job name for the shape.

        Parameters
        ----------
        node_id : `str`
            The job's quantum UUID.
        label : `str`
            Job label.
        tags : `dict` [`str`, `~typing.Any`]
            Data-id tags.

        Returns
        -------
        name : `str`
            ``{uuid}_{label}_{data id}`` as bps's default ``templateDataId``
            gives (realistic), or ``{label}_{visit or tract}_{detector or
            patch}`` (short).
        """
        if not self.realistic:
            first = tags.get("visit", tags.get("tract"))
            second = tags.get("detector", tags.get("patch"))
            return f"{label}_{first}_{second}"
        dims = ("tract", "patch", "band", "visit", "exposure", "detector")
        name = f"{node_id}_{label}_" + "_".join(str(tags.get(dim, "")) for dim in dims)
        return re.sub("_+", "_", name)

    def add(self, label: str, parents: list[str], tags: dict[str, Any], name: str | None = None) -> str:
        """Add one payload job.

        Parameters
        ----------
        label : `str`
            Job label.
        parents : `list` [`str`]
            Names of the parent jobs (already added).
        tags : `dict` [`str`, `~typing.Any`]
            Data-id tags.
        name : `str`, optional
            Job name; made from the shape's template by default.

        Returns
        -------
        name : `str`
            The job name.
        """
        node_id = self._node_id()
        name = name or self._name(node_id, label, tags)
        job = GenericWorkflowJob(
            name,
            label=label,
            executable=self.executable,
            arguments=self.arguments,
            cmdvals=dict(self.cmdvals, qgraphNodeId=node_id),
            quanta_counts=Counter({label: 1}),
            tags=tags,
            request_memory=_MEMORY.get(label, 2048),
            request_cpus=1,
            number_of_retries=3,
        )
        self.workflow.add_job(job, parents)
        self.workflow.add_job_inputs(name, self.qgraph)
        return name

    def exposure_tags(self, label: str, block: int, detector: int) -> dict[str, Any]:
        """Return the data-id tags of a per-exposure job.

        Parameters
        ----------
        label : `str`
            Job label.
        block : `int`
            Block number.
        detector : `int`
            Exposure index in the block.

        Returns
        -------
        tags : `dict` [`str`, `~typing.Any`]
            Instrument, visit or exposure, and detector.
        """
        if not self.realistic:
            return {"visit": 100000 + block, "detector": detector}
        # Distinct detectors per block: 23 and 189 are coprime. Band is
        # implied by the exposure, not part of the required data id.
        dim = "exposure" if label in _EXPOSURE_DIM_LABELS else "visit"
        detector_id = (block * 37 + detector * 23) % _DETECTORS
        tags = {"instrument": "LSSTCam", dim: _FIRST_VISIT + block, "detector": detector_id}
        return tags

    def coadd_tags(self, label: str, block: int) -> dict[str, Any]:
        """Return the data-id tags of a coadd-level job.

        Parameters
        ----------
        label : `str`
            Job label.
        block : `int`
            Block number (the patch).

        Returns
        -------
        tags : `dict` [`str`, `~typing.Any`]
            Skymap, tract, patch and (for per-band labels) band.
        """
        if not self.realistic:
            return {"tract": 9813, "patch": block}
        tags: dict[str, Any] = {"skymap": "lsst_cells_v1", "tract": 9813, "patch": block % 400}
        if label not in _BANDLESS_LABELS:
            tags["band"] = _BANDS[block % len(_BANDS)]
        return tags

    def add_block(self, block: int) -> None:
        """Add the 84 jobs of one block.

        Parameters
        ----------
        block : `int`
            Block number (used for visit and patch ids).
        """
        names: dict[str, list[str]] = {label: [] for label in EXPOSURE_LABELS}
        for detector in range(EXPOSURES_PER_BLOCK):
            made = {"pipetaskInit": "pipetaskInit"}
            for label, parent_labels in EXPOSURE_LABELS.items():
                tags = self.exposure_tags(label, block, detector)
                made[label] = self.add(label, [made[p] for p in parent_labels], tags)
                names[label].append(made[label])
        coadds: dict[str, str] = {}
        for label, (parent_label, fan_in) in COADD_LABELS.items():
            parents = names[parent_label] if fan_in else [coadds[parent_label]]
            coadds[label] = self.add(label, parents, self.coadd_tags(label, block))


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


def build_workflow(
    n_jobs: int, work_dir: Path, name: str | None = None, shape: str = "realistic"
) -> GenericWorkflow:
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
    shape : `str`, optional
        One of `SHAPES`: job names and command values as bps gives them
        (``realistic``) or the first benchmark's short ones (``short``).

    Returns
    -------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow, with ``run_attrs`` as bps sets them.
    """
    if n_jobs < 2:
        raise ValueError(f"n_jobs must be at least 2, got {n_jobs}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    workflow = GenericWorkflow(name or f"bench_{n_jobs}")
    qgraph = _write_qgraph(work_dir)
    workflow.add_file(qgraph)
    builder = _Builder(workflow, qgraph, shape)
    builder.add("pipetaskInit", [], {}, name="pipetaskInit")
    blocks, extra = divmod(n_jobs - 1, JOBS_PER_BLOCK)
    for block in range(blocks):
        builder.add_block(block)
    for index in range(extra):
        if builder.realistic:
            tags = {"instrument": "LSSTCam", "exposure": _FIRST_VISIT - 1, "detector": index % _DETECTORS}
            builder.add("isr", ["pipetaskInit"], tags)
        else:
            builder.add("isr", ["pipetaskInit"], {"visit": 99999, "detector": index})
    _add_final(workflow, qgraph, work_dir)
    workflow.run_attrs.update(
        {"bps_isjob": "True", "bps_project": "bench", "bps_campaign": "bench", "bps_run": workflow.name}
    )
    workflow.run_attrs.update({"bps_operator": "bench", "bps_payload": "bench", "bps_runsite": "BENCH"})
    return workflow
