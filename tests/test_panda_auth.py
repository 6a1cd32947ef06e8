"""Tests of the panda_auth console script.

The server-facing subcommands run against a loopback HTTP server that plays
the PanDA server's ``/auth/<vo>_auth_config.json`` page, an OIDC provider
(discovery document, device authorization and token endpoints) and the
relay's ``relay_idds_command``.  panda-client builds every URL from
``$PANDA_URL_SSL`` and the auth configuration, and ``urlopen``/httpx accept
``http://``, so the real panda-client code paths run end to end.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from lsst.ctrl.bps.panda import oidc_token
from lsst.ctrl.bps.panda.cli.panda_auth import panda_auth, relay_failure

# The console script of the environment running the tests (its venv's bin/),
# else the one on PATH.
SCRIPT = Path(sys.executable).parent / "panda_auth"
if not SCRIPT.exists():
    SCRIPT = Path(shutil.which("panda_auth") or SCRIPT)
VO = "Rubin"
_TOKEN_VARS = ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_TOKEN_FILE", "OIDC_AUTH_ID_TOKEN")


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_token(**claims: Any) -> str:
    """An unsigned JWT, as panda-client accepts without verification."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def claims_for(exp_in: float, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "tester",
        "iat": now - 100,
        "exp": now + int(exp_in),
        "name": "Test User",
        "email": "tester@example.org",
        "groups": ["rubin", "rubin/production"],
        "organisation_name": "Rubin Observatory",
        **extra,
    }


def write_token(directory: Path, exp_in: float, refresh_token: str | None = "rt-old", **extra: Any) -> Path:
    document: dict[str, Any] = {"id_token": make_token(**claims_for(exp_in, **extra))}
    if refresh_token is not None:
        document["refresh_token"] = refresh_token
    path = directory / ".token"
    path.write_text(json.dumps(document))
    return path


@dataclass
class FakeOIDC:
    """State of the loopback server: its replies and what it was sent."""

    base: str = ""
    new_id_token: str = field(default_factory=lambda: make_token(**claims_for(30 * 86400, name="fresh user")))
    rotate_refresh_token: bool = True
    relay_reply: tuple[int, Any] = (200, [True, {"Status": "OK"}])
    requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def auth_config(self) -> dict[str, Any]:
        return {
            "client_id": "cid",
            "client_secret": "csecret",
            "audience": "https://pandaserver.example.org",
            "jwt_profile": "wlcg",
            "oidc_config_url": f"{self.base}/idp/.well-known/openid-configuration",
        }

    def token_reply(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if (
            grant == "refresh_token"
            and form.get("refresh_token") == "rt-old"
            and form.get("client_id") == "cid"
        ):
            reply: dict[str, Any] = {"id_token": self.new_id_token, "access_token": "at"}
            if self.rotate_refresh_token:
                reply["refresh_token"] = "rt-new"
            return 200, reply
        if grant == "urn:ietf:params:oauth:grant-type:device_code" and form.get("device_code") == "dc-1":
            return 200, {"id_token": self.new_id_token, "refresh_token": "rt-device"}
        return 400, {"error": "invalid_grant"}


def _handler(state: FakeOIDC) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, {}, dict(self.headers)))
            if self.path == f"/auth/{VO}_auth_config.json":
                self._reply(200, state.auth_config())
            elif self.path == "/idp/.well-known/openid-configuration":
                self._reply(
                    200,
                    {
                        "token_endpoint": f"{state.base}/idp/token",
                        "device_authorization_endpoint": f"{state.base}/idp/device",
                    },
                )
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/server/panda/relay_idds_command":
                body = json.loads(gzip.decompress(raw))
                state.requests.append(("POST", self.path, body, dict(self.headers)))
                self._reply(*state.relay_reply, "text/plain")
                return
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            state.requests.append(("POST", self.path, form, dict(self.headers)))
            if self.path == "/idp/device":
                self._reply(
                    200,
                    {
                        "device_code": "dc-1",
                        "user_code": "ABCD",
                        "verification_uri_complete": f"{state.base}/idp/verify?code=ABCD",
                        "expires_in": 60,
                        "interval": 0,
                    },
                )
            elif self.path == "/idp/token":
                self._reply(*state.token_reply(form))
            else:
                self._reply(404, {"error": "not found"})

    return Handler


@pytest.fixture
def oidc_server() -> Iterator[FakeOIDC]:
    state = FakeOIDC()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (*_TOKEN_VARS, "OIDC_AUTH_VO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PANDA_CONFIG_ROOT", str(tmp_path))
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.setenv("PANDA_AUTH_VO", VO)
    monkeypatch.setenv("PANDA_URL_SSL", "http://127.0.0.1:9/server/panda")
    monkeypatch.setenv("PANDA_URL", "http://127.0.0.1:9/server/panda")
    monkeypatch.setenv("PANDA_VERIFY_HOST", "off")
    monkeypatch.setenv("PANDA_BEHIND_REAL_LB", "1")
    return tmp_path


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(panda_auth, list(args), input=input, prog_name="panda_auth")


def run_script(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], input=input, capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def _assert_reported(result: Any, prefix: str, *fragments: str) -> None:
    """``refresh`` reports token and server problems as the existing tool:
    one ``[ERROR]``/``[INFO]``/``[FAIL]`` line on stdout and exit status 0."""
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def _assert_one_line_error(result: Any, *fragments: str) -> None:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = result.output
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text


# -- status ------------------------------------------------------------------


def test_status_shows_claims(env: Path) -> None:
    path = write_token(env, 3 * 86400 + 3600)
    claims = oidc_token.read_token_claims(path)
    result = invoke("status")
    assert result.exit_code == 0, result.output
    # The existing tool's labels and formats (local time, groups joined by
    # commas), then the time left.
    lines = result.output.splitlines()
    assert lines == [
        f"Filename:       {path}",
        f"Valid starting: {datetime.fromtimestamp(claims['iat'])}",
        f"Expires:        {datetime.fromtimestamp(claims['exp'])}",
        "Name:           Test User",
        "Email:          tester@example.org",
        "Groups:         rubin,rubin/production",
        "Organization:   Rubin Observatory",
        lines[7],
    ]
    assert lines[7].startswith("Time left:      valid for 3 d")


def test_status_of_expired_token_is_no_token_as_existing_tool(env: Path) -> None:
    # panda-client does not use a cached token within 5 min of exp: the
    # existing tool then says "No token found"; the fields go to stderr.
    (env / ".token").write_text(json.dumps({"id_token": make_token(exp=int(time.time()) - 7200)}))
    done = run_script("status")
    assert (done.returncode, done.stdout) == (0, "No token found\n")
    assert "EXPIRED 2 h" in done.stderr or "EXPIRED 1 h" in done.stderr
    assert "panda_auth refresh" in done.stderr


def test_status_marks_missing_claims(env: Path) -> None:
    (env / ".token").write_text(json.dumps({"id_token": make_token(exp=int(time.time()) + 7200)}))
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert "Email:          -" in result.output
    assert "Valid starting: -" in result.output


def test_status_of_token_from_environment(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", make_token(**claims_for(3600, name="Env User")))
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert "$PANDA_AUTH_ID_TOKEN" in result.output
    assert "Env User" in result.output


def test_status_without_token(env: Path) -> None:
    # The existing tool's answer and exit status; the reason on stderr.
    done = run_script("status")
    assert (done.returncode, done.stdout) == (0, "No token found\n")
    assert f"No OIDC token file {env / '.token'}" in done.stderr
    assert "panda_auth reset" in done.stderr


def test_status_garbage_token_names_file(env: Path) -> None:
    (env / ".token").write_text("garbage")
    done = run_script("status")
    assert (done.returncode, done.stdout) == (0, "No token found\n")
    assert f"Token file {env / '.token'} is not valid JSON" in done.stderr


def test_status_subprocess(env: Path) -> None:
    write_token(env, 7200)
    done = run_script("status")
    assert done.returncode == 0, done.stderr
    assert "Name:           Test User" in done.stdout
    assert "Organization:   Rubin Observatory" in done.stdout
    assert done.stderr == ""


# -- clean -------------------------------------------------------------------


def test_clean_removes_panda_client_files(env: Path) -> None:
    write_token(env, 3600)
    (env / ".page_cache_0123").write_text("{}")
    (env / "other.txt").write_text("keep")
    result = invoke("clean")
    assert result.exit_code == 0, result.output
    assert f"Removed {env / '.token'}" in result.output
    assert f"Removed {env / '.page_cache_0123'}" in result.output
    assert sorted(p.name for p in env.iterdir()) == ["other.txt"]
    again = invoke("clean")
    assert again.exit_code == 0
    assert f"No token files in {env}" in again.output


# -- environment checks ------------------------------------------------------


@pytest.mark.parametrize("command", ["refresh", "reset"])
@pytest.mark.parametrize("variable", ["PANDA_AUTH", "PANDA_AUTH_VO", "PANDA_URL_SSL"])
def test_missing_environment_names_variable(
    env: Path, monkeypatch: pytest.MonkeyPatch, command: str, variable: str
) -> None:
    write_token(env, 3600)
    monkeypatch.delenv(variable)
    result = invoke(command)
    if command == "refresh":  # reported with exit status 0, as the existing tool
        _assert_reported(result, "[FAIL]", f"environment variable {variable} is not set")
    else:
        _assert_one_line_error(result, f"environment variable {variable} is not set")
    assert (env / ".token").exists()  # reset checks before it cleans


@pytest.mark.parametrize("variable", ["PANDA_URL", "PANDA_VERIFY_HOST"])
def test_reset_needs_what_the_existing_tool_needs(
    env: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """``reset`` exits 1 without these, as the existing tool does; the
    token is kept."""
    write_token(env, 3600)
    monkeypatch.delenv(variable)
    _assert_one_line_error(invoke("reset"), f"environment variable {variable} is not set")
    assert (env / ".token").exists()


def test_wrong_auth_mode(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_AUTH", "x509_no_grid")
    _assert_reported(invoke("refresh"), "[FAIL]", "PANDA_AUTH is 'x509_no_grid'", "PANDA_AUTH=oidc")


def test_missing_environment_subprocess(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANDA_AUTH_VO")
    done = run_script("reset")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: panda_auth reset: environment variable PANDA_AUTH_VO is not set "
        "(the virtual organisation, e.g. Rubin)"
    ]


# -- refresh -----------------------------------------------------------------


def test_refresh_too_early(env: Path) -> None:
    path = write_token(env, 10 * 86400)
    before = path.read_text()
    _assert_reported(invoke("refresh"), "[INFO]", "is valid until", "within 4 days of expiry")
    _assert_reported(invoke("refresh", "--days", "9"), "[INFO]", "within 9 days of expiry")
    assert path.read_text() == before


def test_refresh_expired(env: Path) -> None:
    path = write_token(env, -60)
    exp = oidc_token.read_token_claims(path)["exp"]
    _assert_reported(
        invoke("refresh"), "[ERROR]", f"expired at {oidc_token.format_time(exp)}", "panda_auth reset"
    )


def test_refresh_missing_token(env: Path) -> None:
    _assert_reported(invoke("refresh"), "[ERROR]", f"No OIDC token file {env / '.token'}")


def test_refresh_unreadable_token_file_fails(env: Path) -> None:
    (env / ".token").write_text("garbage")
    _assert_one_line_error(invoke("refresh"), f"Token file {env / '.token'} is not valid JSON")


def test_refresh_without_refresh_token(env: Path) -> None:
    write_token(env, 3600, refresh_token=None)
    _assert_reported(invoke("refresh"), "[FAIL]", "holds no refresh_token")


def test_refresh_rejects_negative_days(env: Path) -> None:
    result = invoke("refresh", "--days", "-1")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def _use_server(monkeypatch: pytest.MonkeyPatch, server: FakeOIDC) -> None:
    monkeypatch.setenv("PANDA_URL_SSL", f"{server.base}/server/panda")
    monkeypatch.setenv("PANDA_URL", f"{server.base}/server/panda")


@pytest.mark.parametrize("rotate", [True, False])
def test_refresh_through_panda_client(
    env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC, rotate: bool
) -> None:
    _use_server(monkeypatch, oidc_server)
    oidc_server.rotate_refresh_token = rotate
    path = write_token(env, 2 * 86400)
    result = invoke("refresh", "--verbose")
    assert result.exit_code == 0, result.output
    document = json.loads(path.read_text())
    assert document["id_token"] == oidc_server.new_id_token
    assert document["refresh_token"] == ("rt-new" if rotate else "rt-old")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    new_exp = oidc_token.read_token_claims(path)["exp"]
    assert f"refreshed; it now expires at {oidc_token.format_time(new_exp)}" in result.output
    paths = [(method, where) for method, where, _, _ in oidc_server.requests]
    assert paths == [
        ("GET", f"/auth/{VO}_auth_config.json"),
        ("GET", "/idp/.well-known/openid-configuration"),
        ("POST", "/idp/token"),
    ]
    form = oidc_server.requests[-1][2]
    assert form == {
        "client_id": "cid",
        "client_secret": "csecret",
        "grant_type": "refresh_token",
        "refresh_token": "rt-old",
    }
    assert oidc_token.check_token() is not None


def test_refresh_refused_by_token_endpoint(
    env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC
) -> None:
    _use_server(monkeypatch, oidc_server)
    path = write_token(env, 86400, refresh_token="revoked")
    before = path.read_text()
    _assert_reported(
        invoke("refresh"), "[FAIL]", f"Refreshing the token at {oidc_server.base}/idp/token failed"
    )
    assert path.read_text() == before


def test_refresh_unknown_vo(env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC) -> None:
    _use_server(monkeypatch, oidc_server)
    monkeypatch.setenv("PANDA_AUTH_VO", "Nobody")
    write_token(env, 86400)
    _assert_reported(
        invoke("refresh"),
        "[FAIL]",
        f"Cannot fetch the auth configuration {oidc_server.base}/auth/Nobody_auth_config.json",
        "code=404",
    )


def test_refresh_unreachable_server(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bound socket that does not listen refuses connections.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("PANDA_URL_SSL", f"{base}/server/panda")
        write_token(env, 86400)
        result = invoke("refresh")
    _assert_reported(
        result, "[FAIL]", f"Cannot fetch the auth configuration {base}/auth/{VO}_auth_config.json"
    )


# -- reset -------------------------------------------------------------------


def test_reset_runs_device_flow_and_relay_call(
    env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC
) -> None:
    _use_server(monkeypatch, oidc_server)
    old = write_token(env, -3600)
    (env / ".page_cache_stale").write_text("{}")
    done = run_script("reset", input="y\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"Removed {old}" in done.stdout
    assert f"Please go to {oidc_server.base}/idp/verify?code=ABCD" in done.stdout
    assert "New token obtained." in done.stdout
    assert "Name:           fresh user" in done.stdout
    document = json.loads(old.read_text())
    assert document == {"id_token": oidc_server.new_id_token, "refresh_token": "rt-device"}
    assert not (env / ".page_cache_stale").exists()
    posts = [
        (where, body, headers) for method, where, body, headers in oidc_server.requests if method == "POST"
    ]
    assert [where for where, _, _ in posts] == [
        "/idp/device",
        "/idp/token",
        "/server/panda/relay_idds_command",
    ]
    assert posts[0][1]["client_id"] == "cid"
    assert "wlcg.groups" in posts[0][1]["scope"]
    relay_body, relay_headers = posts[2][1], posts[2][2]
    assert relay_body == {"command_name": "ping", "manager": True}
    assert relay_headers["Authorization"] == f"Bearer {oidc_server.new_id_token}"
    assert relay_headers["Origin"] == VO


def test_reset_declined_login(env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC) -> None:
    _use_server(monkeypatch, oidc_server)
    write_token(env, -3600)
    done = run_script("reset", input="n\n")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "device authorization flow" in done.stderr
    assert f"{oidc_server.base}/auth/{VO}_auth_config.json" in done.stderr
    assert not (env / ".token").exists()
    assert all(where != "/server/panda/relay_idds_command" for _, where, _, _ in oidc_server.requests)


def test_reset_refuses_externally_supplied_token(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_token(env, 3600)
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", make_token(exp=1))
    _assert_one_line_error(invoke("reset"), "PANDA_AUTH_ID_TOKEN supplies the token", "unset it")
    assert path.exists()


def test_reset_relay_refuses_new_token(
    env: Path, monkeypatch: pytest.MonkeyPatch, oidc_server: FakeOIDC
) -> None:
    _use_server(monkeypatch, oidc_server)
    oidc_server.relay_reply = (403, "ERROR : Token authentication failed. invalid audience")
    done = run_script("reset", input="y\n")
    assert done.returncode == 0  # as the existing tool: the new token is stored
    assert "Traceback" not in done.stderr
    assert "New token obtained." in done.stdout
    assert f"Warning: new token stored in {env / '.token'}, but the PanDA relay call failed" in done.stderr
    assert "Token authentication failed" in done.stderr
    assert json.loads((env / ".token").read_text())["id_token"] == oidc_server.new_id_token


@pytest.mark.parametrize(
    ("code", "output", "failure"),
    [
        (0, [True, {"Status": "OK"}], None),
        (0, [True, [False, "Connection exception to iDDS"]], None),
        (0, [False, "SSL secure connection is required"], "SSL secure connection is required"),
        (255, "[Errno 111] Connection refused", "[Errno 111] Connection refused"),
        (0, "garbled", "unexpected reply 'garbled'"),
    ],
)
def test_relay_failure_layers(code: int, output: Any, failure: str | None) -> None:
    assert relay_failure(code, output) == failure


def test_reset_refuses_stale_pandaclient_import(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pandaclient import Client

    stale = "http://127.0.0.1:1/not-what-pandaclient-read/server/panda"
    assert Client.baseURLSSL != stale
    monkeypatch.setenv("PANDA_URL_SSL", stale)
    path = write_token(env, 3600)
    _assert_one_line_error(invoke("reset"), "pandaclient was imported with PANDA_URL_SSL=", "fresh process")
    assert path.exists()  # nothing was cleaned


# -- the LSST log options of the existing tool -------------------------------


def test_log_options_write_json_records_with_label(env: Path) -> None:
    write_token(env, 86400)  # due for a refresh; the relay at port 9 refuses
    log = env / "auth-log.json"
    done = run_script(
        "--log-level", "DEBUG", "--long-log", "--log-file", str(log), "--no-log-tty",
        "--log-label", "RUN=nightly", "refresh",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[FAIL] Cannot fetch the auth configuration")
    assert done.stderr == ""  # --no-log-tty
    records = [json.loads(line) for line in log.read_text().splitlines()]
    refreshing = [r for r in records if r["message"].startswith("Refreshing the token in")]
    assert refreshing and refreshing[0]["levelname"] == "DEBUG"
    assert refreshing[0]["MDC"] == {"RUN": "nightly"}


def test_log_level_per_component_and_long_format(env: Path) -> None:
    write_token(env, 86400)
    done = run_script("--log-level", "lsst.ctrl.bps.panda=DEBUG", "--long-log", "--log-tty", "refresh")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "Refreshing the token in" in line]
    assert len(lines) == 1 and lines[0].startswith("DEBUG 20")  # the long format has a timestamp
    quiet = run_script("--log-level", "INFO", "refresh")
    assert "Refreshing the token in" not in quiet.stderr


def test_bad_log_level_is_a_usage_error(env: Path) -> None:
    done = run_script("--log-level", "LOUD", "status")
    assert done.returncode == 2
    assert "Invalid value for '--log-level'" in done.stderr
