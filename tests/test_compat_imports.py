# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The existing plugin's import paths, kept as thin compatibility modules:
``utils``, ``panda_auth_utils``, ``constants`` (``PANDA_DEFAULT_*``),
``version`` and ``panda_exceptions``. iDDS calls go to a local PanDA service
started here on loopback (stopped by the fixture that started it)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from lsst.ctrl.bps.panda import constants, exceptions, panda_auth_utils, panda_exceptions, utils
from lsst.ctrl.bps.panda.edgenode import utils as edgenode_utils

PANDA_LOCAL = Path(sys.executable).parent / "panda-local"
DEFAULTS = yaml.safe_load(
    (Path(constants.__file__).parent / "etc" / "panda_defaults.yaml").read_text(encoding="utf-8")
)

# Every PANDA_DEFAULT_* name of the existing plugin's constants module.
EXISTING_DEFAULT_NAMES = [
    "PANDA_DEFAULT_PROD_SOURCE_LABEL",
    "PANDA_DEFAULT_PROCESSING_TYPE",
    "PANDA_DEFAULT_TASK_TYPE",
    "PANDA_DEFAULT_VO",
    "PANDA_DEFAULT_PRIORITY",
    "PANDA_DEFAULT_MAX_JOBS_PER_TASK",
    "PANDA_DEFAULT_RSS",
    "PANDA_DEFAULT_RSS_MAX",
    "PANDA_DEFAULT_MAX_WALLTIME",
    "PANDA_DEFAULT_MAX_ATTEMPTS",
    "PANDA_DEFAULT_CORE_COUNT",
    "PANDA_DEFAULT_CLOUD",
    "PANDA_DEFAULT_MAX_COPY_WORKERS",
    "PANDA_DEFAULT_MAX_PAYLOADS_PER_PANDA_JOB",
    "PANDA_DEFAULT_ORDER_ID_MAP_FILE",
    "PANDA_DEFAULT_NAME_LENGTH",
    "PANDA_DEFAULT_MAX_REQUEST_LENGTH",
]


# -- constants, version, panda_exceptions ------------------------------------


def test_every_existing_default_name_reads_the_packaged_defaults() -> None:
    namespace: dict[str, Any] = {}
    exec("from lsst.ctrl.bps.panda.constants import *", namespace)
    for name in EXISTING_DEFAULT_NAMES:
        assert name in namespace, name
        key = constants.PANDA_DEFAULT_KEYS.get(name)
        expected = constants.IDDS_MAX_NAME_LENGTH_DEFAULT if key is None else DEFAULTS.get(key)
        assert namespace[name] == expected, name
    assert constants.PANDA_DEFAULT_MAX_WALLTIME == 90000
    assert constants.PANDA_DEFAULT_PROCESSING_TYPE is None
    with pytest.raises(AttributeError, match="PANDA_DEFAULT_NOPE"):
        _ = constants.PANDA_DEFAULT_NOPE


def test_version_module() -> None:
    from lsst.ctrl.bps.panda.version import __version__

    assert __version__ == version("lsst-ctrl-bps-panda")


def test_panda_exceptions_are_this_packages_classes() -> None:
    for name in panda_exceptions.__all__:
        cls = getattr(panda_exceptions, name)
        assert cls is getattr(exceptions, name)
        assert issubclass(cls, panda_exceptions.PandaAuthError)


# -- panda_auth_utils --------------------------------------------------------


def _token(exp_in: float) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iat": now, "exp": now + int(exp_in), "name": "Compat User", "groups": ["rubin"]}
    return f"{b64({'alg': 'none'})}.{b64(claims)}."


@pytest.fixture
def token_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PANDA_CONFIG_ROOT", str(tmp_path))
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.setenv("PANDA_AUTH_VO", "Rubin")
    monkeypatch.setenv("PANDA_URL_SSL", "http://127.0.0.1:9/server/panda")
    return tmp_path


def test_panda_auth_utils_status_expiration_clean(token_dir: Path) -> None:
    assert panda_auth_utils.panda_auth_status() is None
    assert panda_auth_utils.panda_auth_expiration() == 0
    path = token_dir / ".token"
    path.write_text(json.dumps({"id_token": _token(3600), "refresh_token": "rt"}))
    status = panda_auth_utils.panda_auth_status()
    assert status is not None
    assert (status["filename"], status["name"]) == (str(path), "Compat User")
    assert panda_auth_utils.panda_auth_expiration() == status["exp"]
    panda_auth_utils.panda_auth_clean()
    assert not path.exists()


def test_panda_auth_utils_refresh_raises_the_existing_errors(token_dir: Path) -> None:
    with pytest.raises(panda_exceptions.TokenNotFoundError):
        panda_auth_utils.panda_auth_refresh()
    (token_dir / ".token").write_text(json.dumps({"id_token": _token(10 * 86400), "refresh_token": "rt"}))
    with pytest.raises(panda_exceptions.TokenTooEarlyError, match="within 4 days"):
        panda_auth_utils.panda_auth_refresh(days=4)
    (token_dir / ".token").write_text(json.dumps({"id_token": _token(-60), "refresh_token": "rt"}))
    with pytest.raises(panda_exceptions.TokenExpiredError):
        panda_auth_utils.panda_auth_refresh()


def test_panda_auth_utils_update_needs_the_environment(
    token_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PANDA_AUTH_VO")
    with pytest.raises(panda_exceptions.PandaAuthError, match="PANDA_AUTH_VO"):
        panda_auth_utils.panda_auth_update()


# -- utils -------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local PanDA service on a free loopback port; yields its env."""
    state = tmp_path_factory.mktemp("panda-local")
    env = dict(os.environ, PANDA_BEHIND_REAL_LB="1")
    start = [str(PANDA_LOCAL), "start", "--state-dir", str(state), "--port", "0", "--workers", "1"]
    subprocess.run(start, check=True, env=env, capture_output=True, timeout=120)
    try:
        out = subprocess.run(
            [str(PANDA_LOCAL), "env", "--json", "--state-dir", str(state)],
            check=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        yield json.loads(out)
    finally:
        stop = [str(PANDA_LOCAL), "stop", "--state-dir", str(state)]
        subprocess.run(stop, env=env, capture_output=True, check=False, timeout=120)


@pytest.fixture
def relay_env(service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN", "OIDC_AUTH_VO"):
        monkeypatch.delenv(key, raising=False)
    for key, value in service.items():
        monkeypatch.setenv(key, value)
    return service


def test_idds_client_raw_replies_and_results(relay_env: dict[str, str]) -> None:
    client = utils.get_idds_client({})
    ret = client.ping()
    assert ret[0] == 0
    assert utils.get_idds_result(ret) == (True, {"Status": "OK"}, None)
    checked = utils.idds_call_with_check(
        client.get_requests, func_name="get_requests", request_id=987654, with_detail=False
    )
    status, result, error = utils.get_idds_result(checked)
    assert (status, error) == (True, None)
    assert not result  # no such request


def test_idds_results_of_failures() -> None:
    status, result, error = utils.get_idds_result((255, "[Errno 111] Connection refused"))
    assert (status, result) == (False, None)
    assert error is not None and "Connection refused" in error
    assert utils.get_idds_result((0, (False, "denied")))[:2] == (False, None)
    reply = (0, (True, "Authentication no permission for x"))
    assert utils.get_idds_result(reply) == (False, None, "Authentication no permission for x")


def test_idds_call_with_check_raises_when_the_relay_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/server/panda"
    for key, value in {"PANDA_URL": url, "PANDA_URL_SSL": url, "PANDA_BEHIND_REAL_LB": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PANDA_AUTH", raising=False)
    client = utils.get_idds_client({"iddsServer": "http://127.0.0.1:1/idds"})
    with pytest.raises(exceptions.PanDAUnreachableError, match="request 5"):
        utils.idds_call_with_check(client.get_status, func_name="get_status", request_id=5)


def test_copy_files_for_distribution(tmp_path: Path) -> None:
    (tmp_path / "job.sh").write_text("echo hi\n")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a")
    dist = tmp_path / "dist"
    files = {"job_executable": str(tmp_path / "job.sh"), "butlerConfig": str(tmp_path / "inputs") + "/"}
    utils.copy_files_for_distribution(files, f"file://{dist}/", 2)
    assert (dist / "job.sh").read_text() == "echo hi\n"
    assert (dist / "inputs" / "a.txt").read_text() == "a"
    with pytest.raises(exceptions.StagingError, match="missing.sh"):
        utils.copy_files_for_distribution({"x": str(tmp_path / "missing.sh")}, str(dist), 1)


def test_hex_and_archive_names() -> None:
    assert bytes.fromhex(utils.convert_exec_string_to_hex("echo 'é' {x}")).decode() == "echo 'é' {x}"
    assert utils.download_extract_archive is edgenode_utils.download_extract_archive
