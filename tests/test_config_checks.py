# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""``bps submit`` stops at the plugin's own configuration checks.

Each case runs the real ``bps submit`` command on a submit file missing or
spoiling one plugin key: the command must end before the quantum graph is
built (no submit directory), with one ``Error:`` line naming the key and,
when the relay is the local service or unset, the overlay to include.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(300)

BPS = str(Path(sys.executable).parent / "bps")
OVERLAY_HINT = "includeConfigs: [${CTRL_BPS_PANDA_DIR}/config/bps_local.yaml]"


def _submit(tmp_path: Path, values: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    submit = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "pipelineYaml": str(tmp_path / "pipeline.yaml"),
        "payload": {"payloadName": "checks", "butlerConfig": str(tmp_path / "repo"), "inCollection": "in"},
        "submitPath": str(tmp_path / "submit" / "{outputRun}"),
        "computeSite": "LOCAL",
        "fileDistributionEndPoint": f"file://{tmp_path}/dist/{{uniqProcName}}/",
    }
    submit.update(values)
    path = tmp_path / "submit.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in submit.items() if v is not None}))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANDA_URL")}
    full_env.update(env, PANDA_BEHIND_REAL_LB="1")
    return subprocess.run(
        [BPS, "submit", str(path)], capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=240
    )


def _error_line(proc: subprocess.CompletedProcess, tmp_path: Path) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    assert not (tmp_path / "submit").exists()  # stopped before anything was made
    return errors[0]


@pytest.mark.parametrize(
    ("values", "env", "key", "overlay"),
    [
        ({"computeSite": None}, {}, "computeSite", True),
        ({"computeSite": None}, {"PANDA_URL_SSL": "http://127.0.0.1:1/server/panda"}, "computeSite", True),
        (
            {"computeSite": None},
            {"PANDA_URL_SSL": "https://pandaserver.example.org/server/panda"},
            "computeSite",
            False,
        ),  # fmt: skip
        ({"runnerCommand": "python3 decoder.py"}, {}, "runnerCommand", True),
        ({"fileDistributionEndPoint": None}, {}, "fileDistributionEndPoint", False),
    ],
)
def test_missing_or_bad_key_is_one_line(
    tmp_path: Path, values: dict, env: dict, key: str, overlay: bool
) -> None:
    line = _error_line(_submit(tmp_path, values, env), tmp_path)
    assert f"Configuration key '{key}'" in line
    assert (OVERLAY_HINT in line) is overlay, line
    if key == "fileDistributionEndPoint":
        assert "fileDistributionEndPoint: " in line  # an example to copy


def test_unreachable_local_relay_says_how_to_start_it(tmp_path: Path) -> None:
    env = {"PANDA_URL": "http://127.0.0.1:9/server/panda", "PANDA_URL_SSL": "http://127.0.0.1:9/server/panda"}
    line = _error_line(_submit(tmp_path, {}, env), tmp_path)
    assert 'panda-local start; eval "$(panda-local env)"' in line, line
