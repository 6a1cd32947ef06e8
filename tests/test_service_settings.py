# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of ServiceSettings: every key read once, defaults from the YAML."""

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from prepare_helpers import make_config

from lsst.ctrl.bps import BpsConfig
from lsst.ctrl.bps.panda.constants import IDDS_MAX_NAME_LENGTH_DEFAULT
from lsst.ctrl.bps.panda.exceptions import PanDAConfigError
from lsst.ctrl.bps.panda.panda_service import PanDAService
from lsst.ctrl.bps.panda.service_settings import ServiceSettings, normalise_endpoint

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "python/lsst/ctrl/bps/panda/etc/panda_defaults.yaml"


def test_defaults_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = yaml.safe_load(DEFAULTS.read_text())
    for name in defaults["submitSideResolvedParams"]:
        monkeypatch.setenv(name, f"value-of-{name}")
    settings = ServiceSettings.from_config(make_config(tmp_path), ["label1"])
    assert settings.compute_site == "SITE"
    assert settings.file_distribution_endpoint == f"file://{tmp_path}/dist/"
    assert settings.runner_command == defaults["runnerCommand"]
    assert settings.max_jobs_per_task == defaults["maxJobsPerTask"]
    assert settings.max_request_length == defaults["maxRequestLength"]
    assert settings.max_copy_workers == defaults["maxCopyWorkers"]
    assert settings.placeholder_params == tuple(defaults["placeholderParams"])
    assert dict(settings.submit_env) == {
        name: f"value-of-{name}" for name in defaults["submitSideResolvedParams"]
    }
    assert settings.max_walltime_seconds == defaults["maxWalltimeSeconds"]
    assert settings.order_id_map_filename == defaults["orderIdMapFilename"]
    assert settings.enable_job_name_map is False and settings.enable_qnode_map is False
    assert settings.priority == defaults["priority"]
    assert settings.request_memory == defaults["fallbackRequestMemory"]
    assert settings.run_name == "run1"
    assert settings.submit_path == f"{tmp_path}/submit"
    assert settings.idds_server is None
    label = settings.label("label1")
    assert (label.task_type, label.prod_source_label, label.vo) == ("test", "managed", "wlcg")
    assert label.processing_type is None


def test_defaults_uri_is_the_packaged_yaml() -> None:
    service = PanDAService({})
    with service.defaults_uri.as_local() as local:
        assert Path(local.ospath).read_text() == DEFAULTS.read_text()
    assert service.defaults["maxJobsPerTask"] == yaml.safe_load(DEFAULTS.read_text())["maxJobsPerTask"]


def test_every_default_is_consumed_and_documented() -> None:
    """No dead default: each key is read by ServiceSettings (or is the
    service class / a per-label section) and documented."""
    source = (ROOT / "python/lsst/ctrl/bps/panda/service_settings.py").read_text()
    doc = (ROOT / "doc/configuration.md").read_text()
    defaults = yaml.safe_load(DEFAULTS.read_text())
    for key in defaults:
        assert f"`{key}`" in doc or key == "wmsServiceClass", key
        if key not in ("wmsServiceClass", "finalJob"):
            assert f'"{key}"' in source, f"{key} is not read by ServiceSettings"
    for key in defaults["finalJob"]:
        assert f'"{key}"' in source


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"computeSite": None}, "computeSite"),
        ({"computeSite": ""}, "computeSite"),
        ({"fileDistributionEndPoint": None}, "fileDistributionEndPoint"),
        ({"fileDistributionEndPoint": "/with space/dist"}, "fileDistributionEndPoint"),
        ({"runnerCommand": "python3 decoder.py"}, "runnerCommand"),
        ({"maxJobsPerTask": 0}, "maxJobsPerTask"),
        ({"maxJobsPerTask": "many"}, "maxJobsPerTask"),
        ({"maxRequestLength": -1}, "maxRequestLength"),
        ({"maxCopyWorkers": True}, "maxCopyWorkers"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_invalid_key_named(tmp_path: Path, values: dict[str, Any], key: str) -> None:
    with pytest.raises(PanDAConfigError, match=f"'{key}'") as info:
        ServiceSettings.from_config(make_config(tmp_path, **values))
    assert info.value.key == key


def test_config_without_plugin_defaults(tmp_path: Path) -> None:
    """A config built by hand, without the plugin defaults merged, gets
    them from the packaged YAML; required keys are still required."""
    values = {"fileDistributionEndPoint": "/d", "submitPath": "/s", "uniqProcName": "r"}
    settings = ServiceSettings.from_config(BpsConfig({"computeSite": "S", **values}), ["a"])
    defaults = yaml.safe_load(DEFAULTS.read_text())
    assert settings.max_jobs_per_task == defaults["maxJobsPerTask"]
    assert settings.runner_command == defaults["runnerCommand"]
    assert settings.label("a").vo == defaults["vo"]
    with pytest.raises(PanDAConfigError, match="computeSite"):
        ServiceSettings.from_config(BpsConfig(values))


def test_runner_command_one_line_env_kept(tmp_path: Path) -> None:
    text = (
        'runnerCommand: "bash -c \\"cd {jobInitDir};\\n python3 '
        '${CTRL_BPS_PANDA_DIR}/decoder.py _cmd_line_\\""\njobInitDir: /work\n'
    )
    settings = ServiceSettings.from_config(make_config(tmp_path, text))
    assert (
        settings.runner_command == 'bash -c "cd /work;  python3 ${CTRL_BPS_PANDA_DIR}/decoder.py _cmd_line_"'
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/a/b", "file:///a/b/"),
        ("/a/b/", "file:///a/b/"),
        ("file:///a/b", "file:///a/b/"),
        ("s3://bucket/run", "s3://bucket/run/"),
        ("davs://host:1094/x/", "davs://host:1094/x/"),
        ("file:/a/b", "file:///a/b/"),
        ("file://localhost/a/b", "file:///a/b/"),
        ("s3://bucket", "s3://bucket/"),
    ],
)
def test_normalise_endpoint(given: str, expected: str) -> None:
    assert normalise_endpoint(given) == expected


def test_normalise_relative_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert normalise_endpoint("dist/run") == f"file://{tmp_path}/dist/run/"
    assert normalise_endpoint("~/dist") == f"file://{tmp_path}/home/dist/"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("file://dist/run", "reads as host 'dist'"),
        ("file:dist", "relative path"),
        ("s3:bucket/x", "not an absolute URI"),
        ("s3:///x", "not an absolute URI"),
        ("/scratch/dist/$(id)", "'\\$'"),
        ("/scratch/a b", "' '"),
        ("s3://b/run;x", "';'"),
    ],
)
def test_bad_endpoint_named_at_prepare(tmp_path: Path, given: str, why: str) -> None:
    with pytest.raises(PanDAConfigError, match=f"fileDistributionEndPoint.*{why}"):
        ServiceSettings.from_config(make_config(tmp_path, fileDistributionEndPoint=given))


def test_endpoint_resolves_bps_variables(tmp_path: Path) -> None:
    config = make_config(tmp_path, fileDistributionEndPoint=f"{tmp_path}/dist/{{uniqProcName}}")
    assert ServiceSettings.from_config(config).file_distribution_endpoint == f"file://{tmp_path}/dist/run1/"


def test_endpoint_temp_space_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSST_RUN_TEMP_SPACE", raising=False)
    endpoint = "file://${LSST_RUN_TEMP_SPACE}/x/"
    with pytest.raises(PanDAConfigError, match="fileDistributionEndPoint.*LSST_RUN_TEMP_SPACE"):
        ServiceSettings.from_config(make_config(tmp_path, fileDistributionEndPoint=endpoint))
    config = make_config(
        tmp_path, fileDistributionEndPoint=endpoint, fileDistributionEndPointDefault="s3://b/{uniqProcName}"
    )
    assert ServiceSettings.from_config(config).file_distribution_endpoint == "s3://b/run1/"
    monkeypatch.setenv("LSST_RUN_TEMP_SPACE", str(tmp_path))
    assert ServiceSettings.from_config(config).file_distribution_endpoint == f"file://{tmp_path}/x/"


def test_max_name_length_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path)
    monkeypatch.delenv("IDDS_MAX_NAME_LENGTH", raising=False)
    assert ServiceSettings.from_config(config).max_name_length == IDDS_MAX_NAME_LENGTH_DEFAULT
    monkeypatch.setenv("IDDS_MAX_NAME_LENGTH", "30000")
    assert ServiceSettings.from_config(config).max_name_length == 30000
    monkeypatch.setenv("IDDS_MAX_NAME_LENGTH", "lots")
    with pytest.raises(PanDAConfigError, match="IDDS_MAX_NAME_LENGTH"):
        ServiceSettings.from_config(config)


def test_submit_env_only_for_submit_side_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("OTHER", "x")
    monkeypatch.delenv("ABSENT", raising=False)
    config = make_config(tmp_path, submitSideResolvedParams=["USER", "ABSENT"])
    assert dict(ServiceSettings.from_config(config).submit_env) == {"USER": "alice"}


def test_label_sections(tmp_path: Path) -> None:
    text = (
        "pipetask:\n  isr:\n    processingType: isr_type\n    vo: Rubin\ncluster:\n  c1:\n    taskType: tt\n"
    )
    settings = ServiceSettings.from_config(make_config(tmp_path, text), ["isr", "c1", "finalJob", "other"])
    assert settings.label("isr").processing_type == "isr_type"
    assert settings.label("isr").vo == "Rubin"
    assert settings.label("c1").task_type == "tt"
    assert settings.label("finalJob").processing_type == "Rubin_Merge"
    assert settings.label("other").processing_type is None
    with pytest.raises(PanDAConfigError, match="never"):
        settings.label("never")


def test_booleans_and_map_name(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, enableJobNameMap="true", enableQnodeMap=True, orderIdMapFilename="sub/dir/m.json"
    )
    settings = ServiceSettings.from_config(config)
    assert settings.enable_job_name_map and settings.enable_qnode_map
    assert settings.order_id_map_filename == "m.json"


def test_event_service_read_not_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = ServiceSettings.from_config(make_config(tmp_path, enableEventService="isr:7,calib"))
    assert dict(settings.event_service.labels) == {"isr": 7, "calib": 10}
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    settings = ServiceSettings.from_config(make_config(tmp_path, enableEventService=False))
    assert not settings.event_service.enabled


def test_settings_frozen(tmp_path: Path) -> None:
    settings = ServiceSettings.from_config(make_config(tmp_path))
    with pytest.raises(AttributeError):
        settings.compute_site = "x"  # type: ignore[misc]


def test_usdf_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSST_RUN_TEMP_SPACE", raising=False)
    text = f"includeConfigs:\n  - {ROOT / 'config/bps_panda_usdf.yaml'}\npayload:\n  payloadFolder: f\n"
    config = make_config(tmp_path, text, computeSite=None, fileDistributionEndPoint=None)
    settings = ServiceSettings.from_config(config, ["finalJob"])
    assert settings.compute_site == "SLAC_Rubin"
    assert settings.file_distribution_endpoint.endswith("/panda_cache_box/f/run1/")
    command = settings.runner_command
    assert command.startswith('/bin/bash -c "cd ') and command.endswith('" >&2;')
    assert (
        r"python3 \${CTRL_BPS_PANDA_DIR}/python/lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py _cmd_line_"
        in command
    )
    assert settings.label("finalJob").processing_type == "Rubin_Merge"


def test_label_dependent_root_value(tmp_path: Path) -> None:
    settings = ServiceSettings.from_config(
        make_config(tmp_path, processingType="proc_{label}"), ["isr", "calib"]
    )
    assert settings.label("isr").processing_type == "proc_isr"
    assert settings.label("calib").processing_type == "proc_calib"
