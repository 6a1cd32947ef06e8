# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""A wheel built from this checkout carries the site configs.

The test builds the wheel (``pip wheel --no-deps``), installs it into a
target directory of its own, and in a fresh interpreter that imports the
package from there (dependencies from the test's venv) loads every config
in ``config/`` as ``bps`` does, through both include forms:
``${CTRL_BPS_PANDA_DIR}/config/<name>`` with the variable set from the
installed ``ctrl_bps_panda_dir`` console script, and
``resource://lsst.ctrl.bps.panda/config/<name>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "python" / "lsst" / "ctrl" / "bps" / "panda" / "config"

SUBMIT = {"wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService"}
FORMS = {"env": "${CTRL_BPS_PANDA_DIR}/config/", "resource": "resource://lsst.ctrl.bps.panda/config/"}

LOADER = """
import json, sys
from pathlib import Path
import lsst.ctrl.bps.panda as package
from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig
from importlib.resources import files

included = files("lsst.ctrl.bps.panda").joinpath("config", "bps_panda.yaml")
out = {"package": package.__file__, "included": str(included), "configs": {}}
for submit in sorted(Path(sys.argv[1]).glob("*.yaml")):
    config = BpsConfig(str(submit), defaults=BPS_DEFAULTS)
    keys = json.loads(Path(str(submit) + ".keys").read_text())
    raw = {"replaceVars": False, "expandEnvVars": False, "replaceEnvVars": False}
    out["configs"][submit.name] = {key: str(config.search(key, opt=raw)[1]) for key in keys}
print(json.dumps(out))
"""


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args], check=True, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout installed into a target directory."""
    work = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "-q", str(ROOT), "-w", str(work / "dist"))
    (wheel,) = (work / "dist").glob("lsst_ctrl_bps_panda-*.whl")
    _pip("install", "--no-deps", "-q", "--target", str(work / "site"), str(wheel))
    return work / "site"


def _environment(site: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CTRL_BPS_PANDA_DIR"}
    env["PYTHONPATH"] = str(site)
    return env


def test_wheel_configs_load_through_both_include_forms(installed: Path, tmp_path: Path) -> None:
    env = _environment(installed)
    printed = subprocess.run(
        [str(installed / "bin" / "ctrl_bps_panda_dir")],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout.strip()
    assert Path(printed) == installed / "lsst" / "ctrl" / "bps" / "panda"
    env["CTRL_BPS_PANDA_DIR"] = printed
    names = sorted(path.name for path in CONFIG_DIR.glob("*.yaml"))
    assert len(names) == 13
    expected: dict[str, dict[str, str]] = {}
    for name in names:
        # Every top-level value the file sets (sections and includes aside).
        text = yaml.safe_load((CONFIG_DIR / name).read_text())
        values = {k: str(v) for k, v in text.items() if k != "includeConfigs" and not isinstance(v, dict)}
        for form, prefix in FORMS.items():
            submit = tmp_path / f"{form}-{name}"
            submit.write_text(yaml.safe_dump({"includeConfigs": [prefix + name], **SUBMIT}))
            Path(f"{submit}.keys").write_text(json.dumps(sorted(values)))
            expected[submit.name] = values
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert Path(out["package"]).is_relative_to(installed)  # not the checkout
    assert Path(out["included"]).is_relative_to(installed)
    for name, values in expected.items():
        for key, value in values.items():
            assert out["configs"][name][key] == value, f"{name} {key}"
