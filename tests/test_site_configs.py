# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The site configs in ``config/`` have the existing plugin's effect.

Table-driven over every config an operator's submit file includes today:
``tests/data/site_configs/site_config_cases.py`` builds one workflow the
way ``bps`` does (job attributes from the submit file, per label) and
prepares it with a plugin's ``PanDAService``. The existing plugin's results,
with its own config files, are the fixture
``tests/data/site_configs/existing_plugin.json``, recorded by running that
same file as a script in a throwaway venv holding ``lsst-ctrl-bps-panda``
from PyPI (its docstring has the commands; ``PANDA_BEHIND_REAL_LB=1``
keeps panda-client offline). Here the same cases run through this
package's files, included as ``${CTRL_BPS_PANDA_DIR}/config/<name>`` (the
variable set to the directory printed by the ``ctrl_bps_panda_dir`` console
script, or to this checkout) and as
``resource://lsst.ctrl.bps.panda/config/<name>``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from recordings import recorded, script

from lsst.ctrl.bps.panda import PanDAService

CONFIG_NAMES = [
    "bps_panda.yaml",
    "bps_usdf.yaml",
    "bps_frdf.yaml",
    "bps_ukdf.yaml",
    "bps_idf.yaml",
    "bps_panda_DF.yaml",
    "bps_panda_cmd.yaml",
    "bps_panda_eventservice.yaml",
    "bps_panda_orderid_map.yaml",
    "bps_panda_qnode_map.yaml",
    "bps_remote.yaml",
]
PREFIXES = {
    "env": "${CTRL_BPS_PANDA_DIR}/config/",
    "checkout": "${CTRL_BPS_PANDA_DIR}/config/",
    "resource": "resource://lsst.ctrl.bps.panda/config/",
}
CHECKOUT = Path(__file__).resolve().parent.parent


CASES = script("site_configs", "site_config_cases")

MAP_FILES = ("orderIdMapFilename:", "qnodemap:")

# Where this package deliberately or knowingly differs from the existing
# plugin: (config, work) -> why. Only the job-name/qnode map entries of the
# files field and the map location in the runner may differ there, and the
# test checks that they still do (so an entry goes once the gap closes).
KNOWN_MAP_DIFFERENCES = {
    ("bps_panda_orderid_map.yaml", "finalJob#1"): "this package stages the map to the final job too",
    ("bps_panda_qnode_map.yaml", "finalJob#1"): "this package stages the map to the final job too",
    ("bps_panda_eventservice.yaml", "finalJob#1"): "the event service uses the job-name map, staged likewise",
}
EXPECTED: dict[str, dict[str, Any]] = recorded("site_configs")


def console_script(name: str) -> str:
    """Return the path of one of this package's console scripts."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def installed_dir() -> str:
    """What ``export CTRL_BPS_PANDA_DIR=$(ctrl_bps_panda_dir)`` sets."""
    result = subprocess.run(
        [console_script("ctrl_bps_panda_dir")], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_every_config_has_a_case_and_a_fixture() -> None:
    assert sorted(CASES.CASES) == sorted(CONFIG_NAMES) == sorted(EXPECTED)


def test_console_script_names_a_directory_with_every_config(installed_dir: str) -> None:
    for name in [*CONFIG_NAMES, "bps_local.yaml", "bps_panda_usdf.yaml"]:
        assert (Path(installed_dir) / "config" / name).is_file(), name


@pytest.mark.parametrize("form", sorted(PREFIXES))
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_same_task_fields_and_command_as_existing_plugin(
    name: str, form: str, installed_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "checkout": the variable names the top of this repository.
    monkeypatch.setenv("CTRL_BPS_PANDA_DIR", str(CHECKOUT) if form == "checkout" else installed_dir)
    monkeypatch.setenv("LSST_RUN_TEMP_SPACE", f"{tmp_path}/run_temp")
    directory = tmp_path / name
    directory.mkdir()
    works = CASES.run_case(PanDAService, name, PREFIXES[form], directory)
    got = json.loads(json.dumps(works).replace(str(tmp_path), "<TMP>"))
    expected = EXPECTED[name]
    assert sorted(got) == sorted(expected)
    for work, fields in expected.items():
        got_fields = got[work]
        if (name, work) in KNOWN_MAP_DIFFERENCES:
            assert got_fields["command"] != fields["command"], KNOWN_MAP_DIFFERENCES[name, work]
            got_fields = {**got_fields, "command": _without_maps(got_fields["command"])}
            fields = {**fields, "command": _without_maps(fields["command"])}
        for field, value in fields.items():
            assert got_fields[field] == value, f"{name} {work} {field}"


def _without_maps(command: dict[str, Any]) -> dict[str, Any]:
    """Drop the map files and the map location from a decoded command."""
    runner = re.sub(r"RUBIN_ES_MAP_FILE=\S+;", "RUBIN_ES_MAP_FILE=orderIdMapFilename;", command["runner"])
    files = [item for item in command["files"] if not item.startswith(MAP_FILES)]
    return {**command, "runner": runner, "files": files}
