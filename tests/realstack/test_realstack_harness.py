"""The tier's own machinery, without starting anything (runs in every suite).

Skip-or-fail on missing prerequisites, the state-dir choice, env.sh
parsing and how the client environment is applied.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest
import rs_stack


def test_unavailable_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REALSTACK_REQUIRED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        rs_stack.unavailable("no PostgreSQL")


def test_unavailable_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALSTACK_REQUIRED", "1")
    with pytest.raises(pytest.fail.Exception, match="required but unavailable: no PostgreSQL"):
        rs_stack.unavailable("no PostgreSQL")


def test_missing_postgres_and_python_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rs_stack, "find_pg_bin", lambda: None)
    assert "PostgreSQL" in str(rs_stack.prerequisite_problem())
    monkeypatch.setattr(rs_stack, "find_pg_bin", lambda: "/usr/lib/postgresql/15/bin")
    monkeypatch.setattr(rs_stack, "find_python312", lambda: None)
    assert "Python 3.12" in str(rs_stack.prerequisite_problem())


def test_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REALSTACK_STATE_DIR", str(tmp_path / "s"))
    assert rs_stack.default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("REALSTACK_STATE_DIR")
    chosen = rs_stack.default_state_dir()
    # traversable by the postgres user (not under /root), keyed by the pins
    assert re.fullmatch(r"/tmp/realstack-[^/]+-[0-9a-f]{12}", str(chosen)), chosen
    assert rs_stack.default_state_dir() == chosen


def test_parse_env_sh(tmp_path: Path) -> None:
    env_sh = tmp_path / "env.sh"
    env_sh.write_text(
        "# comment\nexport PANDA_URL='http://127.0.0.1:1/server/panda'\n"
        "export PANDA_BEHIND_REAL_LB=1\nexport REALSTACK_CLIENT_DN='/DC=org/CN=Test User'\nFOO=bar\n"
    )
    assert rs_stack.parse_env_sh(env_sh) == {
        "PANDA_URL": "http://127.0.0.1:1/server/panda",
        "PANDA_BEHIND_REAL_LB": "1",
        "REALSTACK_CLIENT_DN": "/DC=org/CN=Test User",
    }


def test_client_env_applied_also_to_imported_pandaclient(monkeypatch: pytest.MonkeyPatch) -> None:
    # stands in for an imported pandaclient.Client (URLs are read at import)
    client = types.SimpleNamespace(baseURL="http://old/", baseURLSSL="https://old/")
    monkeypatch.setitem(sys.modules, "pandaclient.Client", client)
    monkeypatch.setenv("IDDS_HOST", "http://elsewhere/idds")
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    url = "http://127.0.0.1:9/server/panda"
    inner = pytest.MonkeyPatch()
    try:
        rs_stack.patch_client_env(inner, {"PANDA_URL": url, "PANDA_URL_SSL": url})
        assert client.baseURLSSL == url and client.baseURL == url and os.environ["PANDA_URL_SSL"] == url
        assert "IDDS_HOST" not in os.environ and "PANDA_AUTH" not in os.environ
    finally:
        inner.undo()
    assert (client.baseURL, client.baseURLSSL) == ("http://old/", "https://old/")
    assert os.environ["IDDS_HOST"] == "http://elsewhere/idds"
