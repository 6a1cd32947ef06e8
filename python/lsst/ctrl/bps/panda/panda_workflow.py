# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""`PandaBpsWmsWorkflow`: a prepared PanDA run, ready to submit."""

from __future__ import annotations

__all__ = ["PandaBpsWmsWorkflow", "is_custom_job"]

import json
import logging
import os
from pathlib import Path
from typing import Any

from lsst.ctrl.bps import BaseWmsWorkflow, GenericWorkflow

from .constants import WORKFLOW_JSON_FILENAME
from .idds_transport import cache_url
from .job_archive import new_archive_name, write_job_archive
from .request_encoding import EncodedRequest, encode_request
from .service_settings import ServiceSettings
from .submit_record import SubmitRecord
from .workflow_graph import FlatWorkflow, flatten
from .workflow_plan import QNODE_MAP_FILENAME, WorkflowPlan, plan_workflow

_LOG = logging.getLogger(__name__)

REQUEST_CACHE_DIRNAME = "idds_request_cache"
"""Submit sub-directory where iDDS keeps the parts of a split request."""

_RUN_ATTRS = {
    "operator": "bps_operator",
    "project": "bps_project",
    "campaign": "bps_campaign",
    "payload": "bps_payload",
}


def workflow_labels(generic_workflow: GenericWorkflow, flat: FlatWorkflow | None = None) -> list[str]:
    """Return every job label of a workflow, groups and final job included.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.
    flat : `FlatWorkflow`, optional
        The workflow already flattened.

    Returns
    -------
    labels : `list` [`str`]
        Labels, each once, in first-seen order, the final job's last.
    """
    labels = dict((flat or flatten(generic_workflow)).labels)
    final = generic_workflow.get_final()
    if isinstance(final, GenericWorkflow):
        labels.update(flatten(final).labels)
    elif final is not None:
        labels[final.label] = None
    return list(labels)


class PandaBpsWmsWorkflow(BaseWmsWorkflow):
    """A BPS run translated into an iDDS request.

    Parameters
    ----------
    name : `str`
        Run name (the iDDS request name).
    config : `lsst.ctrl.bps.BpsConfig`
        The BPS configuration.
    settings : `ServiceSettings`
        The plugin settings read from it.
    request : `EncodedRequest`
        The request to send.
    submit_record : `SubmitRecord`
        What later reports need to know.
    """

    def __init__(
        self,
        name: str,
        config: Any,
        settings: ServiceSettings,
        request: EncodedRequest,
        submit_record: SubmitRecord,
    ) -> None:
        super().__init__(name, config)
        self.settings = settings
        self.request = request
        self.files_to_stage: dict[str, str] = {}
        """Target relative to the distribution endpoint (directories end
        in ``/``) to local source, for every file to stage at submit."""
        self.distribution_endpoint = settings.file_distribution_endpoint
        self.submit_record = submit_record
        self.submit_path = submit_record.submit_path
        self.request_cache = os.path.join(self.submit_path, REQUEST_CACHE_DIRNAME)
        self.run_attrs: dict[str, str] = {}
        self.job_archive: str | None = None
        """Archive to upload to the PanDA cache before submitting (custom
        jobs), or `None`."""

    @property
    def idds_workflow(self) -> Any:
        """The request's workflow (`~idds.workflowv2.workflow.Workflow`)."""
        return self.request.workflow

    @classmethod
    def from_generic_workflow(
        cls, config: Any, generic_workflow: GenericWorkflow, out_prefix: str | None, service_class: str
    ) -> PandaBpsWmsWorkflow:
        # Docstring inherited from BaseWmsWorkflow.from_generic_workflow.
        # flatten -> plan -> encode (submit sends the encoded request).
        flat = flatten(generic_workflow)
        custom = is_custom_job(generic_workflow)
        settings = ServiceSettings.from_config(config, workflow_labels(generic_workflow, flat), custom)
        submit_path = os.path.abspath(out_prefix) if out_prefix else settings.submit_path
        archive = new_archive_name() if custom else None
        plan = plan_workflow(
            settings, generic_workflow, flat, archive_url=cache_url(archive) if archive else None
        )
        request = encode_request(plan, settings.max_request_length)
        files_to_stage = {**plan.files_to_stage, **_write_maps(plan, settings, submit_path)}
        if archive is not None:  # the files go in the archive, none is staged
            archive = write_job_archive(os.path.join(submit_path, archive), files_to_stage)
            files_to_stage = {}
        run_attrs = dict(generic_workflow.run_attrs)
        extra: dict[str, Any] = {key: run_attrs.get(attr) for key, attr in _RUN_ATTRS.items()}
        extra.update(site=settings.compute_site, endpoint=settings.file_distribution_endpoint)
        record = SubmitRecord(settings.run_name, submit_path, plan.tasks, extra=extra, request_name=plan.name)
        workflow = cls(generic_workflow.name, config, settings, request, record)
        workflow.files_to_stage = files_to_stage
        workflow.service_class = service_class
        workflow.run_attrs = run_attrs
        workflow.job_archive = archive
        os.makedirs(workflow.request_cache, exist_ok=True)
        return workflow

    def write(self, out_prefix: str) -> None:
        # Docstring inherited from BaseWmsWorkflow.write.
        directory = Path(out_prefix)
        directory.mkdir(parents=True, exist_ok=True)
        text = self.request.text  # the request as submit sends it (unless split)
        (directory / WORKFLOW_JSON_FILENAME).write_text(text + "\n")
        if Path(self.submit_record.submit_path) != directory.resolve():
            _LOG.debug("Submit record kept in %s, not %s", self.submit_record.submit_path, directory)
        self.submit_record.write()
        _LOG.info("Wrote %s (%d bytes) into %s", WORKFLOW_JSON_FILENAME, len(text), directory)

    def record_submission(self, request_id: int | str) -> None:
        """Record the iDDS request id of the submitted run.

        Parameters
        ----------
        request_id : `int` or `str`
            The request id returned by iDDS.
        """
        self.run_id = str(request_id)
        self.submit_record.run_id = int(request_id)
        self.submit_record.write()
        self.submit_record.register()


def is_custom_job(generic_workflow: GenericWorkflow) -> bool:
    """Tell whether a workflow is a ``bps submitcmd`` custom job.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.

    Returns
    -------
    custom : `bool`
        `True` if ``run_attrs["bps_iscustom"]`` is set (ctrl_bps writes
        ``"True"``).
    """
    value = generic_workflow.run_attrs.get("bps_iscustom", False)
    return str(value).strip().lower() not in ("", "0", "false", "none")


def _write_maps(plan: WorkflowPlan, settings: ServiceSettings, submit_path: str) -> dict[str, str]:
    """Write the enabled job-name / qnode maps into the submit directory.

    Parameters
    ----------
    plan : `WorkflowPlan`
        The plan, with its maps.
    settings : `ServiceSettings`
        Plugin settings (map file name).
    submit_path : `str`
        The submit directory.

    Returns
    -------
    stage : `dict` [`str`, `str`]
        Each map's name at the distribution endpoint to the file written.
    """
    stage = {}
    maps = {settings.order_id_map_filename: plan.order_id_map, QNODE_MAP_FILENAME: plan.qnode_map}
    for name, content in maps.items():
        if content is None:
            continue
        path = os.path.join(submit_path, name)
        os.makedirs(submit_path, exist_ok=True)
        with open(path, "w", encoding="utf-8") as stream:
            # dumps, not dump: only the one-shot encoder is C (same text)
            stream.write(json.dumps(content, indent=2 if name == QNODE_MAP_FILENAME else None))
        stage[name] = path
        _LOG.info(
            "Wrote %s (%d entries)", path, sum(len(v) if isinstance(v, dict) else 1 for v in content.values())
        )
    return stage
