# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Remote build (``remoteBuild.enabled``): the submit side.

ctrl_bps skips the local build and calls ``submit(None, config=...,
remote_build=..., config_file=..., compute_site=...)``. The plugin packs
``remoteBuild.files`` and the submit file into a job archive, uploads it
to the PanDA cache and submits an iDDS *build* request of one work
(``build_task``, task type ``lsst_build``) whose command is
``remoteBuild.runnerCommand`` with ``_download_cmd_line_`` (the archive's
cache URL), ``_build_cmd_line_`` (the submit file's name) and
``_compute_site_`` replaced, as the existing plugin does. On the worker,
``edgenode/build_cmd_line_decoder.py`` builds the workflow and sends it into
the same request.
"""

from __future__ import annotations

__all__ = [
    "BUILD_LABEL",
    "BuildTaskSettings",
    "BuildWorkflow",
    "build_task_settings",
    "make_build_workflow",
    "submit_remote_build",
]

import logging
import os
from dataclasses import dataclass
from typing import Any

from lsst.ctrl.bps import BaseWmsWorkflow

from .exceptions import PanDAConfigError
from .service_settings import max_name_length

_LOG = logging.getLogger(__name__)

BUILD_LABEL = "build_task"
"""Task name (and report label) of the build job."""

_NO_EXPANSION = {"replaceVars": True, "expandEnvVars": False, "replaceEnvVars": False, "required": False}
"""Search options of the build values (``$`` left for the worker's shell)."""

_FALLBACK_RSS = 2048
_FALLBACK_RSS_MAX = 512000
_FALLBACK_PRIORITY = 500
_FALLBACK_ATTEMPTS = 5


class BuildWorkflow(BaseWmsWorkflow):
    """What ``submit`` returns for a remote build: the build request.

    Parameters
    ----------
    name : `str`
        Run name (``uniqProcName``).
    config : `lsst.ctrl.bps.BpsConfig`
        The submit configuration.
    idds_workflow : `idds.workflowv2.workflow.Workflow`
        The build workflow.
    """

    def __init__(self, name: str, config: Any, idds_workflow: Any) -> None:
        super().__init__(name, config)
        self.idds_workflow = idds_workflow

    @classmethod
    def from_generic_workflow(
        cls, config: Any, generic_workflow: Any, out_prefix: str | None, service_class: str
    ) -> BaseWmsWorkflow:
        # Docstring inherited from BaseWmsWorkflow.from_generic_workflow.
        raise NotImplementedError("a build workflow is made by make_build_workflow")

    def write(self, out_prefix: str) -> None:
        # Docstring inherited from BaseWmsWorkflow.write.
        raise NotImplementedError("a build workflow is not written")


@dataclass(frozen=True)
class BuildTaskSettings:
    """Values of the build task (``remoteBuild`` section first, then root)."""

    runner_command: str
    site: str | None
    cloud: str | None
    queue: str | None
    rss: int
    rss_max: int
    rss_retry_step: int
    processing_type: str | None
    priority: int
    attempts: int


def _value(config: Any, remote_build: Any, key: str) -> Any:
    """Search a key in ``remoteBuild`` first, then in the whole config."""
    _, value = remote_build.search(key, _NO_EXPANSION)
    if not value:
        _, value = config.search(key, _NO_EXPANSION)
    return value


def _int(config: Any, remote_build: Any, key: str, fallback: int) -> int:
    value = _value(config, remote_build, key)
    try:
        return int(value) if value else fallback
    except (TypeError, ValueError) as exc:
        raise PanDAConfigError(key, f"{value!r} is not a number") from exc


def build_task_settings(config: Any, remote_build: Any) -> BuildTaskSettings:
    """Read the build task's settings.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The submit configuration.
    remote_build : `lsst.ctrl.bps.BpsConfig`
        Its ``remoteBuild`` section.

    Returns
    -------
    settings : `BuildTaskSettings`
        The values.

    Raises
    ------
    PanDAConfigError
        If ``remoteBuild.runnerCommand`` is missing or a number is invalid.
    """
    curvals = {
        "LSST_VERSION": _value(config, remote_build, "LSST_VERSION"),
        "custom_lsst_setup": _value(config, remote_build, "custom_lsst_setup") or "",
        "IDDS_MAX_NAME_LENGTH": max_name_length(),
    }
    _, runner = remote_build.search("runnerCommand", {**_NO_EXPANSION, "curvals": curvals})
    if not runner:
        raise PanDAConfigError("remoteBuild.runnerCommand", "required for remote build, not set")
    rss = _int(config, remote_build, "requestMemory", _FALLBACK_RSS)
    multiplier = _value(config, remote_build, "memoryMultiplier")
    return BuildTaskSettings(
        runner_command=" ".join(str(runner).split("\n")).strip(),
        site=_value(config, remote_build, "computeSite"),
        cloud=_value(config, remote_build, "computeCloud"),
        queue=_value(config, remote_build, "queue"),
        rss=rss,
        rss_max=_int(config, remote_build, "requestMemoryMax", _FALLBACK_RSS_MAX),
        rss_retry_step=int(rss * float(multiplier)) if multiplier else 0,
        processing_type=_value(config, remote_build, "processingType"),
        priority=_int(config, remote_build, "priority", _FALLBACK_PRIORITY),
        attempts=_int(config, remote_build, "numberOfRetries", 0) or _FALLBACK_ATTEMPTS,
    )


def make_build_workflow(
    name: str, settings: BuildTaskSettings, archive_url: str, config_file: str, compute_site: str | None
) -> Any:
    """Return the iDDS build workflow (one ``build_task`` work).

    Parameters
    ----------
    name : `str`
        Workflow name (``uniqProcName``).
    settings : `BuildTaskSettings`
        The build task's values.
    archive_url : `str`
        PanDA cache URL of the archive of the submit inputs.
    config_file : `str`
        The submit file (its base name is passed to the build decoder).
    compute_site : `str` or `None`
        ``bps submit --compute-site``, passed on to the remote build.

    Returns
    -------
    workflow : `idds.workflowv2.workflow.Workflow`
        The workflow.
    """
    from idds.doma.workflowv2.domapandawork import DomaPanDAWork
    from idds.workflowv2.workflow import Workflow

    command = (
        settings.runner_command.replace("_download_cmd_line_", archive_url)
        .replace("_build_cmd_line_", os.path.basename(config_file))
        .replace("_compute_site_", compute_site or "")
    )
    work = DomaPanDAWork(
        executable=command,
        task_type="lsst_build",
        primary_input_collection={"scope": "pseudo_dataset", "name": "pseudo_input_collection#1"},
        output_collections=[{"scope": "pseudo_dataset", "name": "pseudo_output_collection#1"}],
        log_collections=[],
        dependency_map=None,
        task_name=BUILD_LABEL,
        task_queue=settings.queue,
        encode_command_line=True,
        prodSourceLabel="managed",
        processing_type=settings.processing_type,
        task_log={
            "dataset": "PandaJob_#{pandaid}/",
            "destination": "local",
            "param_type": "log",
            "token": "local",
            "type": "template",
            "value": "log.tgz",
        },  # fmt: skip
        task_rss=settings.rss,
        task_rss_max=settings.rss_max,
        task_rss_retry_offset=0 if settings.rss_retry_step else settings.rss,
        task_rss_retry_step=settings.rss_retry_step,
        task_cloud=settings.cloud,
        task_site=settings.site,
        task_priority=settings.priority,
        maxattempt=settings.attempts,
    )
    workflow = Workflow()
    workflow.add_work(work)
    workflow.name = name
    return workflow


def _archive_members(remote_build: Any, config_file: str) -> dict[str, str]:
    """Return name -> path of ``remoteBuild.files`` and the submit file."""
    _, files = remote_build.search("files", opt={"default": []})
    members: dict[str, str] = {}
    for path in [*(files or []), config_file]:
        local = os.path.abspath(os.path.expanduser(os.path.expandvars(str(path))))
        if not os.path.exists(local):
            raise PanDAConfigError("remoteBuild.files", f"{path} does not exist")
        members[os.path.basename(local.rstrip("/"))] = local
    return members


def submit_remote_build(transport: Any, config: Any, remote_build: Any, config_file: str,
                        compute_site: str | None) -> BuildWorkflow:  # fmt: skip
    """Pack, upload and submit a remote build.

    Parameters
    ----------
    transport : `IDDSTransport`
        How to reach PanDA/iDDS.
    config : `lsst.ctrl.bps.BpsConfig`
        The submit configuration (``submitPath`` and ``uniqProcName`` set).
    remote_build : `lsst.ctrl.bps.BpsConfig`
        Its ``remoteBuild`` section.
    config_file : `str`
        The submit file.
    compute_site : `str` or `None`
        ``bps submit --compute-site``.

    Returns
    -------
    workflow : `BuildWorkflow`
        The build request, ``run_id`` set.
    """
    from .idds_transport import cache_url
    from .job_archive import new_archive_name, write_job_archive
    from .submit_record import SubmitRecord, TaskRecord

    settings = build_task_settings(config, remote_build)
    submit_path = str(config["submitPath"])
    name = str(config["uniqProcName"])
    archive = write_job_archive(
        os.path.join(submit_path, new_archive_name()), _archive_members(remote_build, config_file)
    )
    url = transport.put_cache_file(archive)
    if url != cache_url(os.path.basename(archive)):
        _LOG.debug("Archive %s is cached as %s", archive, url)
    idds_workflow = make_build_workflow(name, settings, url, config_file, compute_site)
    request_id = transport.submit_build(idds_workflow)
    extra = {key: config.search(key, {"default": None})[1] for key in ("operator", "project", "campaign")}
    extra.update(payload=config.search("payloadName", {"default": None})[1], site=settings.site)
    record = SubmitRecord(name, submit_path, {BUILD_LABEL: TaskRecord(BUILD_LABEL, 1)}, request_id, extra)
    record.write()
    record.register()
    workflow = BuildWorkflow(name, config, idds_workflow)
    workflow.run_id = str(request_id)
    _LOG.info("Submitted remote build request %s (%s); the workflow is built at the site", request_id, name)
    return workflow
