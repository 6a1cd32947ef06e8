# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Names shared by the plugin, the edge-node decoder and the local service.

Only fixed protocol names live here; configurable defaults live in
``etc/panda_defaults.yaml``.
"""

from __future__ import annotations

__all__ = [
    "CACHE_DOWNLOAD_PREFIX",
    "CACHE_SIZE_LIMIT",
    "CACHE_UPLOAD_PATH",
    "CMD_LINE_TOKEN",
    "DEFAULTS_URI",
    "FINAL_PSEUDO_INPUT",
    "IDDS_MAX_NAME_LENGTH_DEFAULT",
    "IN_PLACEHOLDER",
    "NO_DIRECT_IO",
    "RELAY_PATH",
    "SUBMIT_RECORD_FILENAME",
    "WORKFLOW_JSON_FILENAME",
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

RELAY_PATH = "/server/panda/relay_idds_command"
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
