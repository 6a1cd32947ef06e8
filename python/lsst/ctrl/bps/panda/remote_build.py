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
    "build_command",
    "build_task_settings",
    "submit_remote_build",
]

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsst.ctrl.bps import BaseWmsWorkflow

from .constants import BUILD_LABEL, WORKFLOW_JSON_FILENAME
from .exceptions import PanDABpsError, PanDAConfigError
from .service_settings import max_name_length

if TYPE_CHECKING:
    from .request_encoding import EncodedRequest

_LOG = logging.getLogger(__name__)

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
    request : `~lsst.ctrl.bps.panda.request_encoding.EncodedRequest`
        The build request (`request_encoding.encode_build_request`).
    """

    def __init__(self, name: str, config: Any, request: EncodedRequest) -> None:
        super().__init__(name, config)
        self.request = request

    @property
    def idds_workflow(self) -> Any:
        """The build request's iDDS workflow (one ``build_task`` work)."""
        return self.request.workflow

    @classmethod
    def from_generic_workflow(
        cls, config: Any, generic_workflow: Any, out_prefix: str | None, service_class: str
    ) -> BaseWmsWorkflow:
        # Docstring inherited from BaseWmsWorkflow.from_generic_workflow.
        raise PanDABpsError(
            "a build workflow is made by submit_remote_build from the remoteBuild section, "
            "not from a GenericWorkflow"
        )

    def write(self, out_prefix: str) -> None:
        # Docstring inherited from BaseWmsWorkflow.write.
        path = os.path.join(out_prefix, WORKFLOW_JSON_FILENAME)
        with open(path, "w") as stream:
            stream.write(self.request.text + "\n")
        _LOG.info("Wrote the build request (%d bytes) to %s", len(self.request.text), path)


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


def build_command(
    settings: BuildTaskSettings, archive_url: str, config_file: str, compute_site: str | None
) -> str:
    """Return the build job's command line (``remoteBuild.runnerCommand``).

    Parameters
    ----------
    settings : `BuildTaskSettings`
        The build task's values.
    archive_url : `str`
        PanDA cache URL of the archive of the submit inputs
        (``_download_cmd_line_``).
    config_file : `str`
        The submit file; its base name is ``_build_cmd_line_``.
    compute_site : `str` or `None`
        ``bps submit --compute-site`` (``_compute_site_``).

    Returns
    -------
    command : `str`
        The command.
    """
    return (
        settings.runner_command.replace("_download_cmd_line_", archive_url)
        .replace("_build_cmd_line_", os.path.basename(config_file))
        .replace("_compute_site_", compute_site or "")
    )


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
    from .request_encoding import encode_build_request
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
    request = encode_build_request(name, build_command(settings, url, config_file, compute_site), settings)
    workflow = BuildWorkflow(name, config, request)
    workflow.write(submit_path)  # what is sent, for the operator
    request_id = transport.submit_build(request)
    extra = {key: config.search(key, {"default": None})[1] for key in ("operator", "project", "campaign")}
    extra.update(payload=config.search("payloadName", {"default": None})[1], site=settings.site)
    record = SubmitRecord(name, submit_path, {BUILD_LABEL: TaskRecord(BUILD_LABEL, 1)}, request_id, extra)
    record.write()
    record.register()
    workflow.run_id = str(request_id)
    _LOG.info("Submitted remote build request %s (%s); the workflow is built at the site", request_id, name)
    return workflow
