# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Names shared by the plugin, the edge-node decoder and the local service.

Only fixed protocol names live here; configurable defaults live in
``etc/panda_defaults.yaml``. For code written against the existing plugin,
its ``PANDA_DEFAULT_*`` names are provided too: each is read, on first use,
from that file (the key in `PANDA_DEFAULT_KEYS`), so it is this package's
default, which may differ from the existing plugin's (e.g. priority 500,
not 900). ``PANDA_DEFAULT_NAME_LENGTH`` is `IDDS_MAX_NAME_LENGTH_DEFAULT`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = [
    "BUILD_LABEL",
    "BUILD_REQUEST_VARIABLE",
    "BUILD_SIGNATURE_VARIABLE",
    "CACHE_DOWNLOAD_PREFIX",
    "CACHE_SIZE_LIMIT",
    "CACHE_UPLOAD_PATH",
    "CMD_LINE_TOKEN",
    "DEFAULTS_URI",
    "FINAL_PSEUDO_INPUT",
    "IDDS_MAX_NAME_LENGTH_DEFAULT",
    "IN_PLACEHOLDER",
    "LOCAL_SERVICE_NAME",
    "NO_DIRECT_IO",
    "PANDA_DEFAULT_KEYS",
    "PANDA_DEFAULT_NAME_LENGTH",
    "PANDA_SERVER_PATH",
    "RELAY_PATH",
    "RETRY_UNLESS_EXIT_ATTRIBUTE",
    "SUBMIT_RECORD_FILENAME",
    "WORKFLOW_JSON_FILENAME",
    "ZIP_PREFIX",
]

DEFAULTS_URI = "resource://lsst.ctrl.bps.panda/etc/panda_defaults.yaml"
"""Where the packaged defaults live."""

CMD_LINE_TOKEN = "_cmd_line_"
"""Token in ``runnerCommand`` replaced by the encoded job command line."""

IN_PLACEHOLDER = "${IN/L}"
"""Replaced by PanDA (or the local service) by each job's pseudo input name."""

NO_DIRECT_IO = "cmdlineplaceholder"
"""Fifth decoder field when no input is read in place."""

FINAL_PSEUDO_INPUT = "pure_pseudoinput"
"""Base name of the final job's pseudo input."""

IDDS_MAX_NAME_LENGTH_DEFAULT = 4000
"""iDDS limit on a dependency-map name (``IDDS_MAX_NAME_LENGTH`` overrides)."""

LOCAL_SERVICE_NAME = "panda-local"
"""Identity of the local service in what it serves: ``locking_thread_name``
of its request rows (how ``reporting`` recognises a local run),
``scheduler_id`` of its job rows, issuer and audience of its tokens."""

BUILD_LABEL = "build_task"
"""Task name (and report label) of a remote build's build job."""

BUILD_REQUEST_VARIABLE = "IDDS_BUILD_REQUEST_ID"
"""Environment variable of a remote-build job: the request it builds into."""

BUILD_SIGNATURE_VARIABLE = "IDDS_BUIL_SIGNATURE"
"""Environment variable of a remote-build job: the request's signature
(spelled as iDDS spells it)."""

ZIP_PREFIX = "idds_zip:"
"""Marker iDDS puts in front of zipped data (``zip_data``)."""

PANDA_SERVER_PATH = "/server/panda"
"""Path of ``PANDA_URL``/``PANDA_URL_SSL`` (panda-client adds its routes)."""

RELAY_PATH = PANDA_SERVER_PATH + "/relay_idds_command"
"""Legacy relay route used by panda-client's iDDS API."""

WORKFLOW_JSON_FILENAME = "panda_idds_workflow.json"
"""The iDDS workflow as sent, written by ``PandaBpsWmsWorkflow.write``."""

SUBMIT_RECORD_FILENAME = "panda_submit_record.json"
"""Run id, run name and task name -> label/job-count map in the submit dir."""

CACHE_UPLOAD_PATH = "/api/v1/file_server/upload_cache_file"
"""Route of panda-client's ``putFile`` (multipart field ``file``)."""

CACHE_DOWNLOAD_PREFIX = "/cache/"
"""Route prefix of panda-client's ``getFile``: ``<host>/cache/<name>``."""

CACHE_SIZE_LIMIT = 10 * 1024 * 1024
"""Largest file ``putFile`` uploads (panda-client's ``NO_BUILD_LIMIT``)."""

PANDA_DEFAULT_NAME_LENGTH = IDDS_MAX_NAME_LENGTH_DEFAULT
"""The existing plugin's name for `IDDS_MAX_NAME_LENGTH_DEFAULT`."""

PANDA_DEFAULT_KEYS: dict[str, str] = {
    "PANDA_DEFAULT_CLOUD": "computeCloud",
    "PANDA_DEFAULT_CORE_COUNT": "fallbackRequestCpus",
    "PANDA_DEFAULT_MAX_ATTEMPTS": "fallbackNumberOfRetries",
    "PANDA_DEFAULT_MAX_COPY_WORKERS": "maxCopyWorkers",
    "PANDA_DEFAULT_MAX_JOBS_PER_TASK": "maxJobsPerTask",
    "PANDA_DEFAULT_MAX_PAYLOADS_PER_PANDA_JOB": "maxPayloadsPerPandaJob",
    "PANDA_DEFAULT_MAX_REQUEST_LENGTH": "maxRequestLength",
    "PANDA_DEFAULT_MAX_WALLTIME": "maxWalltimeSeconds",
    "PANDA_DEFAULT_ORDER_ID_MAP_FILE": "orderIdMapFilename",
    "PANDA_DEFAULT_PRIORITY": "priority",
    "PANDA_DEFAULT_PROCESSING_TYPE": "processingType",
    "PANDA_DEFAULT_PROD_SOURCE_LABEL": "prodSourceLabel",
    "PANDA_DEFAULT_RSS": "fallbackRequestMemory",
    "PANDA_DEFAULT_RSS_MAX": "requestMemoryMax",
    "PANDA_DEFAULT_TASK_TYPE": "taskType",
    "PANDA_DEFAULT_VO": "vo",
}
"""The existing plugin's ``PANDA_DEFAULT_*`` name -> key of the defaults."""

# Exported too (``import *``), though provided by `__getattr__`.
__all__ += sorted(PANDA_DEFAULT_KEYS)


@cache
def _packaged_root_defaults() -> dict[str, Any]:
    """Read the top level of ``etc/panda_defaults.yaml`` (once)."""
    from importlib.resources import files

    import yaml

    text = files(__package__).joinpath("etc", "panda_defaults.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def __getattr__(name: str) -> Any:
    # PEP 562: the PANDA_DEFAULT_* names are read from the defaults on use,
    # so that the edge-node decoder importing this module reads no YAML.
    if name in PANDA_DEFAULT_KEYS:
        return _packaged_root_defaults().get(PANDA_DEFAULT_KEYS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


RETRY_UNLESS_EXIT_ATTRIBUTE = "retry_unless_exit"
"""Attribute of a ``DomaPanDAWork`` carrying ctrl_bps ``retryUnlessExit``
(a list of exit codes); honoured by the local service, ignored by PanDA."""
