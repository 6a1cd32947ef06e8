"""Tests of oidc_token: finding, decoding and checking panda-client's token."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pandaclient import openidc_utils

from lsst.ctrl.bps import BpsError
from lsst.ctrl.bps.panda import oidc_token
from lsst.ctrl.bps.panda.exceptions import PandaAuthError, TokenExpiredError, TokenNotFoundError

_TOKEN_VARS = ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN")


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_token(**claims: Any) -> str:
    """An unsigned JWT, as panda-client accepts without verification."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def write_token(directory: Path, exp_in: float, **claims: Any) -> Path:
    now = time.time()
    body = {"iat": int(now) - 60, "exp": now + exp_in, "name": "Test User", **claims}
    path = directory / ".token"
    path.write_text(json.dumps({"id_token": make_token(**body), "refresh_token": "rt"}))
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _TOKEN_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PANDA_CONFIG_ROOT", str(tmp_path))
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    return tmp_path


def test_token_path_follows_panda_config_root(env: Path) -> None:
    assert oidc_token.token_path() == env / ".token"
    helper = openidc_utils.OpenIdConnect_Utils("http://127.0.0.1:1/auth/x.json", log_stream=None)
    assert Path(helper.get_token_path()) == oidc_token.token_path()


def test_token_path_defaults_to_cwd_and_expands_home(
    env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PANDA_CONFIG_ROOT")
    monkeypatch.chdir(tmp_path)
    assert oidc_token.token_path() == Path(".token")
    assert oidc_token.token_path().resolve() == tmp_path / ".token"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PANDA_CONFIG_ROOT", "~/cfg")
    assert oidc_token.token_path() == tmp_path / "cfg" / ".token"


def test_read_token_claims_matches_panda_client_decoder(env: Path) -> None:
    path = write_token(env, 3600, email="t@example.org", groups=["rubin", "rubin/dev"])
    claims = oidc_token.read_token_claims()
    assert claims["name"] == "Test User"
    assert claims["groups"] == ["rubin", "rubin/dev"]
    document = json.loads(path.read_text())
    assert claims == openidc_utils.decode_id_token(document["id_token"])
    assert oidc_token.read_token_claims(path) == claims


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json at all", "is not valid JSON"),
        (json.dumps({"access_token": "x"}), "holds no 'id_token'"),
        (json.dumps(["id_token"]), "holds no 'id_token'"),
        (json.dumps({"id_token": "nodots"}), "is not a JWT"),
        (json.dumps({"id_token": "a.!!!notbase64!!!.c"}), "undecodable payload"),
        (json.dumps({"id_token": f"a.{_b64([1, 2])}.c"}), "not a JSON object"),
    ],
)
def test_read_token_claims_garbage_names_the_file(env: Path, content: str, fragment: str) -> None:
    path = env / ".token"
    path.write_text(content)
    with pytest.raises(PandaAuthError) as info:
        oidc_token.read_token_claims()
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, TokenNotFoundError)


def test_read_token_claims_missing_file(env: Path) -> None:
    with pytest.raises(TokenNotFoundError, match=str(env / ".token")):
        oidc_token.read_token_claims()


@pytest.mark.parametrize("value", [None, "", "kerberos"])
def test_check_token_without_oidc_is_none(
    env: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("PANDA_AUTH")
    else:
        monkeypatch.setenv("PANDA_AUTH", value)
    (env / ".token").write_text("garbage")
    assert oidc_token.check_token() is None


def test_check_token_valid(env: Path) -> None:
    write_token(env, 3600, email="t@example.org")
    claims = oidc_token.check_token()
    assert claims is not None
    assert claims["email"] == "t@example.org"


def test_check_token_expiring_soon(env: Path) -> None:
    write_token(env, 120)
    exp = oidc_token.read_token_claims()["exp"]
    with pytest.raises(TokenExpiredError) as info:
        oidc_token.check_token()
    assert oidc_token.format_time(exp) in str(info.value)
    assert "panda_auth refresh" in str(info.value)
    # A smaller margin accepts the same token.
    assert oidc_token.check_token(min_valid_seconds=30) is not None


def test_check_token_expired(env: Path) -> None:
    write_token(env, -10)
    exp = oidc_token.read_token_claims()["exp"]
    with pytest.raises(TokenExpiredError, match="expired at " + oidc_token.format_time(exp)):
        oidc_token.check_token(min_valid_seconds=0)


def test_check_token_missing(env: Path) -> None:
    with pytest.raises(TokenNotFoundError, match=str(env / ".token")):
        oidc_token.check_token()


def test_check_token_garbage(env: Path) -> None:
    (env / ".token").write_text("{")
    with pytest.raises(PandaAuthError, match="is not valid JSON") as info:
        oidc_token.check_token()
    assert not isinstance(info.value, TokenExpiredError | TokenNotFoundError)


@pytest.mark.parametrize("exp", [None, "soon", True])
def test_check_token_without_numeric_exp(env: Path, exp: object) -> None:
    claims = {"name": "x"} if exp is None else {"exp": exp}
    (env / ".token").write_text(json.dumps({"id_token": make_token(**claims)}))
    with pytest.raises(PandaAuthError, match="no numeric 'exp'"):
        oidc_token.check_token()


def test_env_token_takes_precedence_like_panda_client(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_token(env, -100)
    monkeypatch.setenv("OIDC_AUTH_ID_TOKEN", make_token(exp=time.time() + 3600, name="from env"))
    assert oidc_token.locate_token().description == "$OIDC_AUTH_ID_TOKEN"
    claims = oidc_token.check_token()
    assert claims is not None and claims["name"] == "from env"
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", make_token(exp=time.time() - 1))
    with pytest.raises(TokenExpiredError, match=r"\$PANDA_AUTH_ID_TOKEN.*supply a new token"):
        oidc_token.check_token()


def test_oidc_auth_token_file_holds_a_raw_jwt(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = env / "raw.jwt"
    monkeypatch.setenv("OIDC_AUTH_TOKEN_FILE", str(raw))
    with pytest.raises(TokenNotFoundError, match=str(raw)):
        oidc_token.check_token()
    raw.write_text(make_token(exp=time.time() + 3600, name="raw") + "\n")
    source = oidc_token.locate_token()
    assert source.path == raw and not source.cached
    claims = oidc_token.check_token()
    assert claims is not None and claims["name"] == "raw"


def _populate(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    for name in (".token", ".token.bak", ".page_cache_1234", "keep.txt", ".tokenizer_config", "token"):
        (directory / name).write_text("x")


def test_remove_token_files_matches_panda_client_cleanup(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _populate(ours)
    _populate(theirs)
    listed = oidc_token.token_files(ours)
    removed = oidc_token.remove_token_files(ours)
    assert removed == listed
    assert {p.name for p in removed} == {".token", ".token.bak", ".page_cache_1234", ".tokenizer_config"}
    helper = openidc_utils.OpenIdConnect_Utils("http://127.0.0.1:1/x", token_dir=str(theirs), log_stream=None)
    helper.cleanup()
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs)) == ["keep.txt", "token"]
    assert oidc_token.remove_token_files(ours) == []
    assert oidc_token.token_files(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://pandaserver.example.org/server/panda",
            "https://pandaserver.example.org/auth/Rubin_auth_config.json",
        ),
        (
            "https://host.example.org:8443/server/panda",
            "https://host.example.org:8443/auth/Rubin_auth_config.json",
        ),
        ("http://127.0.0.1:25080/server/panda", "http://127.0.0.1:25080/auth/Rubin_auth_config.json"),
    ],
)
def test_auth_config_url(url: str, expected: str) -> None:
    assert oidc_token.auth_config_url(url, "Rubin") == expected


@pytest.mark.parametrize("url", ["pandaserver/server/panda", "https://host:notaport/x", ""])
def test_auth_config_url_rejects_non_urls(url: str) -> None:
    with pytest.raises(PandaAuthError, match="PANDA_URL_SSL"):
        oidc_token.auth_config_url(url, "Rubin")


def test_format_time_is_utc() -> None:
    assert oidc_token.format_time(0) == "1970-01-01 00:00:00 UTC"
    assert oidc_token.format_time(1796150000.7) == "2026-12-01 18:33:20 UTC"


def test_errors_are_bps_errors() -> None:
    for cls in (PandaAuthError, TokenExpiredError, TokenNotFoundError):
        assert issubclass(cls, BpsError)
