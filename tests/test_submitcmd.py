# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``bps submitcmd``: custom jobs ship their script through the PanDA cache.

The translation is compared with the existing plugin's, recorded by
``tests/data/custom_job/record_custom_job.py``; the end-to-end test runs
``bps submitcmd`` and ``bps report`` as separate processes against a local
PanDA service, with ``LSST_RUN_TEMP_SPACE`` unset and no usable
``fileDistributionEndPoint``, as on a laptop.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from local_harness import LocalService
from recordings import recorded, script

from lsst.ctrl.bps import BpsConfig
from lsst.ctrl.bps.panda import PanDAService

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RECORDED = recorded("custom_job")
CACHE = "http://127.0.0.1:1/server/panda"


def _config(tmp: Path, endpoint: str | None) -> BpsConfig:
    """The recording's configuration (see record_custom_job.py)."""
    return script("custom_job", "record_custom_job").make_config(str(tmp), endpoint)


@pytest.mark.parametrize("scenario", sorted(RECORDED["scenarios"]))
def test_translation_matches_the_existing_plugin(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsst.ctrl.bps.construct import create_custom_workflow

    expected = RECORDED["scenarios"][scenario]
    for name in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
        monkeypatch.setenv(name, CACHE)
    monkeypatch.delenv("LSST_RUN_TEMP_SPACE", raising=False)
    config = _config(tmp_path, expected["endpoint"])
    generic_workflow, gw_config = create_custom_workflow(config)
    workflow = PanDAService(gw_config).prepare(gw_config, generic_workflow, gw_config["submitPath"])

    (work,) = workflow.idds_workflow.template.works.values()
    words = work.executable.split()
    tail = " ".join(words[words.index("${IN/L}") + 1 :]).replace(CACHE, "<PANDACACHE_URL>")
    assert (
        re.sub(r"jobO\.[0-9a-f-]{36}\.tar\.gz", "jobO.<uuid>.tar.gz", tail).split() == expected["runner_tail"]
    )
    assert bytes.fromhex(words[words.index("${IN/L}") - 1]).decode() == expected["command"]
    assert work.task_name == expected["task_name"]
    assert (work.processingType, work.task_type) == (expected["processing_type"], expected["task_type"])
    assert [entry["name"] for entry in work.dependency_map] == [e["name"] for e in expected["dependency_map"]]
    # Nothing is staged to the endpoint (the existing plugin lists the
    # executable in files_to_pre_stage but skips staging for custom jobs).
    assert workflow.files_to_stage == {}
    assert workflow.job_archive is not None
    with tarfile.open(workflow.job_archive) as stream:
        assert sorted(stream.getnames()) == expected["archive_members"]
    assert words[-1] == f"{CACHE}/cache/{os.path.basename(workflow.job_archive)}"


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_bps_submitcmd_runs_through_the_cache(service: LocalService, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = tmp_path / "hello.sh"
    script.write_text('#!/bin/bash\necho "hello $1 from $(pwd)" > "$2"\n')
    submit_file = tmp_path / "hello.yaml"
    submit_file.write_text(
        yaml.safe_dump(
            {
                "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
                "includeConfigs": [str(ROOT / "config" / "bps_local.yaml")],
                "operator": "me",
                "project": "dev",
                "campaign": "quick",
                "payload": {"payloadName": "hello"},
                "submitPath": f"{tmp_path}/submit/{{outputRun}}",
                # What site configs say: unusable here, and not needed.
                "fileDistributionEndPoint": "${LSST_RUN_TEMP_SPACE}/panda_cache_box/{uniqProcName}/",
                "customJob": {"executable": str(script), "arguments": f"world {out}"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "LSST_RUN_TEMP_SPACE"}
    env.update(service.exports)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BPS_WMS_SERVICE_CLASS="lsst.ctrl.bps.panda.PanDAService",
        CTRL_BPS_PANDA_RUN_INDEX=str(tmp_path / "runs.jsonl"),
    )
    text = _run([str(BIN / "bps"), "submitcmd", str(submit_file)], env, tmp_path)
    run_id = re.search(r"Run Id: (\d+)", text).group(1)  # type: ignore[union-attr]
    wait = [sys.executable, str(ROOT / "demo" / "wait_run.py"), run_id, "--timeout", "300", "--interval", "1"]
    _run(wait, env, tmp_path)
    report = _run([str(BIN / "bps"), "report", "--id", run_id], env, tmp_path)
    assert re.search(r"customJob(\s+\d+){8}\s+1\s+0\s+0\s+1", report), report

    workdir = out.read_text().split(" from ")[1].strip()
    assert workdir.startswith(str(service.layout.root))  # ran in the service's job directory
    assert (Path(workdir) / "hello.sh").exists()  # extracted from the archive there
    cached = list(Path(service.layout.cache_dir).glob("jobO.*.tar.gz"))
    assert len(cached) == 1
    assert not (tmp_path / "FileDistribution").exists()
    assert not list(tmp_path.glob("panda_cache_box"))
