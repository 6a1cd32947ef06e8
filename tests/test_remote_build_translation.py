# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The remote-build request compared with the existing plugin's.

``tests/data/remote_build/existing_plugin.json`` was recorded from
lsst-ctrl-bps-panda 30.2026.4300 by ``record_remote_build.py`` next to it;
here ``PanDAService.submit(None, config=..., remote_build=...,
config_file=..., compute_site=...)`` (what ctrl_bps's ``submit_driver``
calls) runs with the same submit file against a recording transport, the
one seam.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from idds.common.utils import json_loads
from recordings import recorded, script

from lsst.ctrl.bps import BpsConfig
from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.constants import WORKFLOW_JSON_FILENAME
from lsst.ctrl.bps.panda.exceptions import PanDABpsError, PanDAConfigError
from lsst.ctrl.bps.panda.remote_build import BuildWorkflow
from lsst.ctrl.bps.panda.submit_record import SubmitRecord

RECORDED = recorded("remote_build")
RECORDER = script("remote_build", "record_remote_build")
CACHE = "http://127.0.0.1:1/server/panda"


class RecordingTransport:
    """Keeps what the plugin uploads and submits; answers request id 7."""

    def __init__(self) -> None:
        self.uploaded: list[str] = []
        self.builds: list[Any] = []

    def put_cache_file(self, path: str) -> str:
        self.uploaded.append(path)
        return f"{CACHE}/cache/{os.path.basename(path)}"

    def submit_build(self, request: Any) -> int:
        self.builds.append(request)
        return 7


def _submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RecordingTransport, Any, BpsConfig]:
    for name in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
        monkeypatch.setenv(name, CACHE)
    monkeypatch.delenv("IDDS_MAX_NAME_LENGTH", raising=False)
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))
    path, _ = RECORDER.write_submit(str(tmp_path))
    config = BpsConfig(path, defaults=PanDAService({}).defaults)
    transport = RecordingTransport()
    service = PanDAService(config, transport=transport)  # type: ignore[arg-type]
    workflow = service.submit(
        None,  # type: ignore[arg-type]
        config=config,
        remote_build=config["remoteBuild"],
        config_file=path,
        compute_site="OTHER_SITE",
    )
    return transport, workflow, config


def test_build_request_matches_the_existing_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, workflow, _ = _submit(tmp_path, monkeypatch)
    assert isinstance(workflow, BuildWorkflow)
    assert workflow.run_id == "7"
    (request,) = transport.builds
    build = request.workflow
    assert build.name == RECORDED["workflow_name"]
    assert not request.split
    assert json_loads(request.text).template.works.keys() == build.template.works.keys()
    (work,) = build.template.works.values()
    expected = dict(RECORDED["work"])
    normalised = RECORDER
    monkeypatch.setenv("PANDACACHE_URL", CACHE)
    got = normalised.work_record(work)
    assert got == expected
    (archive,) = transport.uploaded
    with tarfile.open(archive) as stream:
        assert sorted(stream.getnames()) == RECORDED["archive_members"]
    assert re.search(r"/cache/jobO\.[0-9a-f-]{36}\.tar\.gz remote\.yaml OTHER_SITE$", work.executable)


def test_build_request_is_written_as_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, workflow, config = _submit(tmp_path, monkeypatch)
    (request,) = transport.builds
    written = Path(config["submitPath"]) / WORKFLOW_JSON_FILENAME
    assert written.read_text() == request.text + "\n"
    assert workflow.idds_workflow is request.workflow
    with pytest.raises(PanDABpsError, match="submit_remote_build"):
        BuildWorkflow.from_generic_workflow(config, None, None, "x")


def test_build_request_is_recorded_for_bps_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, config = _submit(tmp_path, monkeypatch)
    record = SubmitRecord.read(config["submitPath"])
    assert record.run_id == 7
    assert {name: (task.label, task.jobs) for name, task in record.tasks.items()} == {
        "build_task": ("build_task", 1)
    }


def test_missing_runner_command_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"computeSite: SITE\nsubmitPath: {tmp_path}/submit\nuniqProcName: r\nremoteBuild:\n  enabled: true\n"
    )
    config = BpsConfig(str(path), defaults=PanDAService({}).defaults)
    service = PanDAService(config, transport=RecordingTransport())  # type: ignore[arg-type]
    with pytest.raises(PanDAConfigError, match=r"remoteBuild\.runnerCommand"):
        service.submit(None, config=config, remote_build=config["remoteBuild"], config_file=str(path))  # type: ignore[arg-type]


def test_missing_remote_build_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"computeSite: SITE\nsubmitPath: {tmp_path}/submit\nuniqProcName: r\nremoteBuild:\n  enabled: true\n"
        f"  runnerCommand: x\n  files: [{tmp_path}/absent.yaml]\n"
    )
    config = BpsConfig(str(path), defaults=PanDAService({}).defaults)
    service = PanDAService(config, transport=RecordingTransport())  # type: ignore[arg-type]
    with pytest.raises(PanDAConfigError, match="absent.yaml does not exist"):
        service.submit(None, config=config, remote_build=config["remoteBuild"], config_file=str(path))  # type: ignore[arg-type]
