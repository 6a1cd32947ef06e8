# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Record the existing PanDA plugin's remote-build request.

Run with a Python that has the *existing* plugin (``lsst-ctrl-bps-panda``
from PyPI) installed, never this package, with a PanDA cache to upload to
(a local service's ``panda-local env``)::

    python -m venv /tmp/oldplugin-venv
    /tmp/oldplugin-venv/bin/pip install lsst-ctrl-bps-panda
    panda-local start --state-dir /tmp/rec-state --port 0
    eval "$(panda-local env --state-dir /tmp/rec-state)"
    cd tests/data/remote_build
    /tmp/oldplugin-venv/bin/python record_remote_build.py
    panda-local stop --state-dir /tmp/rec-state

It calls the existing plugin's ``create_idds_build_workflow`` with the
arguments ctrl_bps's ``submit_driver`` passes (``config``, ``remote_build``,
``config_file``, ``compute_site``) for the remote-build overlay of
``BUILD_VALUES`` and writes the build work's fields and the archive's
members to ``existing_plugin.json`` (archive uuid and cache URL replaced by
placeholders). ``tests/test_remote_build_translation.py`` compares this
package's build request with it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig

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


def normalise(text: str) -> str:
    """Replace the archive uuid and the cache URL prefix by placeholders."""
    text = re.sub(r"jobO\.[0-9a-f-]{36}\.tar\.gz", "jobO.<uuid>.tar.gz", text)
    return text.replace(os.environ["PANDACACHE_URL"], "<PANDACACHE_URL>")


def work_record(work: Any) -> dict[str, Any]:
    """Return the recorded fields of the build work."""
    return {
        "executable": normalise(work.executable),
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
    import lsst.ctrl.bps.panda

    if "site-packages" not in lsst.ctrl.bps.panda.__file__:
        sys.exit("run this with the existing plugin installed from PyPI, not this package")
    from importlib.metadata import version

    os.environ.pop("IDDS_MAX_NAME_LENGTH", None)
    with tempfile.TemporaryDirectory() as tmp:
        recorded = {"plugin_version": version("lsst-ctrl-bps-panda"), **record(tmp)}
    out = Path(__file__).with_name("existing_plugin.json")
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
