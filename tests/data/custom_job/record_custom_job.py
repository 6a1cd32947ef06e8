# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Record how the existing PanDA plugin translates a ``bps submitcmd`` job.

Run with a Python that has the *existing* plugin (``lsst-ctrl-bps-panda``
from PyPI) installed, never this package, with a PanDA cache to upload to
(a local service's ``panda-local env``)::

    python -m venv /tmp/oldplugin-venv
    /tmp/oldplugin-venv/bin/pip install lsst-ctrl-bps-panda
    panda-local start --state-dir /tmp/rec-state --port 0
    eval "$(panda-local env --state-dir /tmp/rec-state)"
    cd tests/data/custom_job
    /tmp/oldplugin-venv/bin/python record_custom_job.py
    panda-local stop --state-dir /tmp/rec-state

It builds the custom workflow with ctrl_bps's ``create_custom_workflow``
(as ``bps submitcmd`` does) and translates it with the existing plugin's
``add_idds_work``, which uploads the script's archive to the cache, then
writes the work's fields, the files staged and the archive's members to
``existing_plugin.json`` next to this file (the archive's uuid and the
cache URL's host replaced by placeholders).
``tests/test_submitcmd.py`` compares this package's translation with it.
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


def normalise(text: str) -> str:
    """Replace the archive uuid and the cache URL prefix by placeholders."""
    text = re.sub(r"jobO\.[0-9a-f-]{36}\.tar\.gz", "jobO.<uuid>.tar.gz", text)
    return text.replace(os.environ["PANDACACHE_URL"], "<PANDACACHE_URL>")


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
        "runner_tail": [normalise(word) for word in words[words.index("${IN/L}") + 1 :]],
        "command": bytes.fromhex(words[words.index("${IN/L}") - 1]).decode(),
        "staged": sorted(staged),
        "archive_members": members,
    }


def main() -> None:
    """Record the custom job with and without an endpoint."""
    import lsst.ctrl.bps.panda

    if "site-packages" not in lsst.ctrl.bps.panda.__file__:
        sys.exit("run this with the existing plugin installed from PyPI, not this package")
    from importlib.metadata import version

    recorded: dict[str, Any] = {"plugin_version": version("lsst-ctrl-bps-panda"), "scenarios": {}}
    for name, endpoint in (("no_endpoint", None), ("endpoint", "file:///dist/{uniqProcName}/")):
        with tempfile.TemporaryDirectory() as tmp:
            recorded["scenarios"][name] = record(tmp, endpoint)
    out = Path(__file__).with_name("existing_plugin.json")
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
