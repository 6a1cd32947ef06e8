# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Record the existing PanDA plugin's remote-build request.

Run as ``tests/data/existing_plugin_recording.py`` says (with the existing
plugin, against a local service's PanDA cache).

It calls the existing plugin's ``create_idds_build_workflow`` with the
arguments ctrl_bps's ``submit_driver`` passes (``config``, ``remote_build``,
``config_file``, ``compute_site``) for the remote-build overlay of
``BUILD_VALUES`` and writes the build work's fields and the archive's
members to ``existing_plugin.json`` (archive uuid and cache URL replaced by
placeholders). ``tests/test_remote_build_translation.py`` compares this
package's build request with it.
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/data: the module below
from existing_plugin_recording import (
    existing_plugin_version,
    normalise_archive,
    write_recording,
)

BUILD_VALUES: dict[str, Any] = {
    "enabled": True,
    "runnerCommand": (
        "export LSST={LSST_VERSION}; {custom_lsst_setup} export N={IDDS_MAX_NAME_LENGTH}; "
        "python3 ${CTRL_BPS_PANDA_DIR}/build_cmd_line_decoder.py "
        "_download_cmd_line_ _build_cmd_line_ _compute_site_"
    ),
    "requestMemory": 4096,
    "numberOfRetries": 2,
    "processingType": "build",
    "queue": "BUILDQ",
}
"""The ``remoteBuild`` section of the recording."""

ROOT_VALUES: dict[str, Any] = {
    "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
    "computeSite": "SITE",
    "computeCloud": "CLOUD",
    "LSST_VERSION": "w_2026_40",
    "custom_lsst_setup": "setup -j foo;",
    "priority": 700,
    "memoryMultiplier": 2,
    "uniqProcName": "remote_run",
    "bps_defined": {"uniqProcName": "remote_run"},
}
"""Top-level keys of the recording."""

EXTRA_FILE = "extra_input.yaml"
"""A file listed in ``remoteBuild.files``."""


def write_submit(tmp: str) -> tuple[str, str]:
    """Write the submit file and the extra file; return both paths."""
    extra = os.path.join(tmp, EXTRA_FILE)
    Path(extra).write_text("description: shipped with the submit file\n")
    values = {**ROOT_VALUES, "submitPath": f"{tmp}/submit", "remoteBuild": {**BUILD_VALUES, "files": [extra]}}
    os.makedirs(values["submitPath"], exist_ok=True)
    path = os.path.join(tmp, "remote.yaml")
    Path(path).write_text(yaml.safe_dump(values))
    return path, extra


def work_record(work: Any) -> dict[str, Any]:
    """Return the recorded fields of the build work."""
    return {
        "executable": normalise_archive(work.executable),
        "task_name": work.task_name,
        "task_type": work.task_type,
        "dependency_map": work.dependency_map,
        "task_queue": work.task_queue,
        "encode_command_line": work.encode_command_line,
        "prodSourceLabel": work.prodSourceLabel,
        "processing_type": work.processingType,
        "task_rss": work.task_rss,
        "task_rss_max": work.task_rss_max,
        "task_rss_retry_offset": work.task_rss_retry_offset,
        "task_rss_retry_step": work.task_rss_retry_step,
        "task_cloud": work.task_cloud,
        "task_site": work.task_site,
        "task_priority": work.task_priority,
        "maxattempt": work.maxAttempt,
        "task_log": work.task_log,
    }


def record(tmp: str) -> dict[str, Any]:
    """Make the build workflow with the existing plugin."""
    from lsst.ctrl.bps.panda.utils import create_idds_build_workflow

    path, _ = write_submit(tmp)
    config = BpsConfig(path, defaults=BPS_DEFAULTS)
    workflow = create_idds_build_workflow(
        config=config, remote_build=config["remoteBuild"], config_file=path, compute_site="OTHER_SITE"
    )
    (work,) = workflow.template.works.values()
    archives = sorted(Path(config["submitPath"]).glob("jobO.*.tar.gz"))
    with tarfile.open(archives[0]) as stream:
        members = sorted(stream.getnames())
    return {"workflow_name": workflow.name, "work": work_record(work), "archive_members": members}


def main() -> None:
    """Record the build request into ``existing_plugin.json``."""
    version = existing_plugin_version()
    os.environ.pop("IDDS_MAX_NAME_LENGTH", None)
    with tempfile.TemporaryDirectory() as tmp:
        recorded = {"plugin_version": version, **record(tmp)}
    write_recording(__file__, recorded)


if __name__ == "__main__":
    main()
