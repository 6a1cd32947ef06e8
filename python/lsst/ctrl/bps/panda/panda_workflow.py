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

from idds.common.utils import json_dumps

from lsst.ctrl.bps import BaseWmsWorkflow, GenericWorkflow

from .constants import WORKFLOW_JSON_FILENAME
from .dependency_map import zip_map
from .idds_transport import cache_url, preset_json
from .idds_workflow_generator import QNODE_MAP_FILENAME, GeneratedWorkflow, IDDSWorkflowGenerator
from .job_archive import new_archive_name, write_job_archive
from .service_settings import ServiceSettings
from .submit_record import SubmitRecord
from .workflow_graph import FlatWorkflow, flatten

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
    """A BPS run translated into an iDDS workflow.

    Parameters
    ----------
    name : `str`
        Run name (the iDDS request name).
    config : `lsst.ctrl.bps.BpsConfig`
        The BPS configuration.
    settings : `ServiceSettings`
        The plugin settings read from it.
    generated : `GeneratedWorkflow`
        The translation.
    submit_record : `SubmitRecord`
        What later reports need to know.
    """

    def __init__(
        self,
        name: str,
        config: Any,
        settings: ServiceSettings,
        generated: GeneratedWorkflow,
        submit_record: SubmitRecord,
    ) -> None:
        super().__init__(name, config)
        self.settings = settings
        self.idds_workflow = generated.idds_workflow
        self.files_to_stage: dict[str, str] = generated.files_to_stage
        self.distribution_endpoint = settings.file_distribution_endpoint
        self.submit_record = submit_record
        self.submit_path = submit_record.submit_path
        self.request_cache = os.path.join(self.submit_path, REQUEST_CACHE_DIRNAME)
        self.run_attrs: dict[str, str] = {}
        self.job_archive: str | None = None
        """Archive to upload to the PanDA cache before submitting (custom
        jobs), or `None`."""

    @classmethod
    def from_generic_workflow(
        cls, config: Any, generic_workflow: GenericWorkflow, out_prefix: str | None, service_class: str
    ) -> PandaBpsWmsWorkflow:
        # Docstring inherited from BaseWmsWorkflow.from_generic_workflow.
        flat = flatten(generic_workflow)
        custom = is_custom_job(generic_workflow)
        settings = ServiceSettings.from_config(config, workflow_labels(generic_workflow, flat), custom)
        submit_path = os.path.abspath(out_prefix) if out_prefix else settings.submit_path
        archive = new_archive_name() if custom else None
        url = cache_url(archive) if archive else None
        generated = IDDSWorkflowGenerator(settings, generic_workflow, flat, archive_url=url).build()
        _write_maps(generated, settings, submit_path)
        if archive is not None:  # the files go in the archive, none is staged
            archive = write_job_archive(os.path.join(submit_path, archive), generated.files_to_stage)
            generated.files_to_stage.clear()
        run_attrs = dict(generic_workflow.run_attrs)
        extra: dict[str, Any] = {key: run_attrs.get(attr) for key, attr in _RUN_ATTRS.items()}
        extra.update(site=settings.compute_site, endpoint=settings.file_distribution_endpoint)
        record = SubmitRecord(
            settings.run_name,
            submit_path,
            generated.tasks,
            extra=extra,
            request_name=str(generated.idds_workflow.name),
        )
        workflow = cls(generic_workflow.name, config, settings, generated, record)
        workflow.service_class = service_class
        workflow.run_attrs = run_attrs
        workflow.job_archive = archive
        os.makedirs(workflow.request_cache, exist_ok=True)
        return workflow

    def write(self, out_prefix: str) -> None:
        # Docstring inherited from BaseWmsWorkflow.write.
        directory = Path(out_prefix)
        directory.mkdir(parents=True, exist_ok=True)
        self._zip_maps(True)  # zipped by the generator; again if an earlier write unzipped them
        # The request exactly as submit sends it: handed to the transport,
        # which then need not serialise the workflow again.
        document = json_dumps(self.idds_workflow)
        if len(document) > self.settings.max_request_length:
            self._zip_maps(False)  # submit will split the request: keep plain lists
        else:
            preset_json(self.idds_workflow, document)
        (directory / WORKFLOW_JSON_FILENAME).write_text(document + "\n")
        if Path(self.submit_record.submit_path) != directory.resolve():
            _LOG.debug("Submit record kept in %s, not %s", self.submit_record.submit_path, directory)
        self.submit_record.write()
        _LOG.info("Wrote %s (%d bytes) into %s", WORKFLOW_JSON_FILENAME, len(document), directory)

    def _zip_maps(self, zipped: bool) -> None:
        """Store every work's dependency map zipped, or plain again.

        iDDS zips each map (JSON, zlib, base64) whenever the workflow is
        serialised: for the file written here, to measure the request and
        to send it. A map stored already zipped (same format) is sent as
        is; the generator stores them so (`MapZipper`), which makes every
        serialisation cheap. iDDS splits requests larger than
        ``maxRequestLength`` from plain maps only, so such requests get
        them plain again.

        Parameters
        ----------
        zipped : `bool`
            Zip the maps, or unzip them.
        """
        for work in self.idds_workflow.template.works.values():
            stored = work._dependency_map
            if zipped and isinstance(stored, list):
                work._dependency_map = zip_map(stored)
            elif not zipped and isinstance(stored, str):
                work._dependency_map = work.unzip_data(stored)

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


def _write_maps(generated: GeneratedWorkflow, settings: ServiceSettings, submit_path: str) -> None:
    """Write the enabled job-name / qnode maps into the submit directory.

    Parameters
    ----------
    generated : `GeneratedWorkflow`
        The translation, with its maps; their staging sources are pointed
        at the files written.
    settings : `ServiceSettings`
        Plugin settings (map file name).
    submit_path : `str`
        The submit directory.
    """
    maps = {settings.order_id_map_filename: generated.order_id_map, QNODE_MAP_FILENAME: generated.qnode_map}
    for name, content in maps.items():
        if content is None:
            continue
        path = os.path.join(submit_path, name)
        os.makedirs(submit_path, exist_ok=True)
        with open(path, "w", encoding="utf-8") as stream:
            # dumps, not dump: only the one-shot encoder is C (same text)
            stream.write(json.dumps(content, indent=2 if name == QNODE_MAP_FILENAME else None))
        generated.files_to_stage[name] = path
        _LOG.info(
            "Wrote %s (%d entries)", path, sum(len(v) if isinstance(v, dict) else 1 for v in content.values())
        )
