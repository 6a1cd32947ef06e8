# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Record how the existing PanDA plugin translates a ``bps submitcmd`` job.

Run as ``tests/data/existing_plugin_recording.py`` says (with the existing
plugin, against a local service's PanDA cache).

It builds the custom workflow with ctrl_bps's ``create_custom_workflow``
(as ``bps submitcmd`` does) and translates it with the existing plugin's
``add_idds_work``, which uploads the script's archive to the cache, then
writes the work's fields, the files staged and the archive's members to
``existing_plugin.json`` next to this file (the archive's uuid and the
cache URL's host replaced by placeholders).
``tests/test_submitcmd.py`` compares this package's translation with it.
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

RUNNER = "bash ./decoder.sh _cmd_line_"
"""Runner command of both plugins in the recording."""

SCRIPT = "#!/bin/bash\necho hello $1\n"
"""The custom job's script (``hello.sh``)."""

ARGUMENTS = "world 42"
"""The custom job's arguments."""


def make_config(tmp: str, endpoint: str | None) -> BpsConfig:
    """Return the submit configuration of the recorded custom job.

    Parameters
    ----------
    tmp : `str`
        Scratch directory.
    endpoint : `str` or `None`
        ``fileDistributionEndPoint`` (`None`: not set).

    Returns
    -------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    """
    script = Path(tmp) / "hello.sh"
    script.write_text(SCRIPT)
    values: dict[str, Any] = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "computeSite": "SITE",
        "submitPath": f"{tmp}/submit",
        "uniqProcName": "custom_run",
        "operator": "me",
        "project": "dev",
        "campaign": "quick",
        "payloadName": "hello",
        "runnerCommand": RUNNER,
        "bps_defined": {"uniqProcName": "custom_run"},
        "customJob": {"executable": str(script), "arguments": ARGUMENTS},
    }
    if endpoint is not None:
        values["fileDistributionEndPoint"] = endpoint
    os.makedirs(values["submitPath"], exist_ok=True)
    path = os.path.join(tmp, "custom.yaml")
    with open(path, "w") as stream:
        yaml.safe_dump(values, stream)
    return BpsConfig(path, defaults=BPS_DEFAULTS)


def record(tmp: str, endpoint: str | None) -> dict[str, Any]:
    """Translate the custom job with the existing plugin.

    Parameters
    ----------
    tmp : `str`
        Scratch directory.
    endpoint : `str` or `None`
        ``fileDistributionEndPoint``.

    Returns
    -------
    recorded : `dict` [`str`, `~typing.Any`]
        The work's fields, files staged and archive members.
    """
    from idds.workflowv2.workflow import Workflow

    from lsst.ctrl.bps.construct import create_custom_workflow
    from lsst.ctrl.bps.panda.utils import add_idds_work

    config = make_config(tmp, endpoint)
    generic_workflow, gw_config = create_custom_workflow(config)
    workflow = Workflow(name=generic_workflow.name)
    # It archives the executables by name, relative to the current
    # directory: run it where ctrl_bps copied the script.
    cwd = os.getcwd()
    os.chdir(config["submitPath"])
    try:
        staged, _, _ = add_idds_work(gw_config, generic_workflow, workflow)
    finally:
        os.chdir(cwd)
    (work,) = workflow.template.works.values()
    words = work.executable.split()
    archives = sorted(Path(config["submitPath"]).glob("jobO.*.tar.gz"))
    with tarfile.open(archives[0]) as stream:
        members = sorted(stream.getnames())
    return {
        "endpoint": endpoint,
        "task_name": work.task_name,
        "processing_type": work.processingType,
        "task_type": work.task_type if hasattr(work, "task_type") else work.taskType,
        "dependency_map": work.dependency_map,
        "runner_tail": [normalise_archive(word) for word in words[words.index("${IN/L}") + 1 :]],
        "command": bytes.fromhex(words[words.index("${IN/L}") - 1]).decode(),
        "staged": sorted(staged),
        "archive_members": members,
    }


def main() -> None:
    """Record the custom job with and without an endpoint."""
    recorded: dict[str, Any] = {"plugin_version": existing_plugin_version(), "scenarios": {}}
    for name, endpoint in (("no_endpoint", None), ("endpoint", "file:///dist/{uniqProcName}/")):
        with tempfile.TemporaryDirectory() as tmp:
            recorded["scenarios"][name] = record(tmp, endpoint)
    write_recording(__file__, recorded)


if __name__ == "__main__":
    main()
