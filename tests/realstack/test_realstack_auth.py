"""Credentials: valid, wrong and missing tokens against both relays.

"real" is the harness's token-checking relay: panda-server 1.0.4 with
``token_authType = oidc``, verifying RS256 ID tokens of a loopback issuer
with its production ``TokenDecoder`` (discovery document + JWK set over
HTTP, audience, issuer, VO group), and no DN from the web server, so the
identity comes from the token only. "local" is the local PanDA service,
which accepts only the token it issued. Both are called with
``PANDA_AUTH=oidc`` exactly as a Rubin user calls PanDA.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from rs_helpers import chain_workflow, enum_name, payload, unique_name
from rs_stack import Backend, LocalService, RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(300)]

AUTH_FAILED = "ERROR : Token authentication failed."


def mint(stack: RealStack, *options: str) -> str:
    """An ID token from the loopback issuer (``oidc_issuer.py token``)."""
    argv = [
        stack.python,
        stack.env["REALSTACK_OIDC_TOOL"],
        "token",
        stack.env["REALSTACK_OIDC_DIR"],
        *options,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def oidc_env(stack: RealStack, token: str | None) -> dict[str, str]:
    """Client environment for the token-checking relay."""
    env = stack.client_env()
    env.update(
        PANDA_URL=stack.env["REALSTACK_OIDC_PANDA_URL"], PANDA_URL_SSL=stack.env["REALSTACK_OIDC_PANDA_URL"]
    )
    env.update(PANDA_AUTH="oidc", PANDA_AUTH_VO="Rubin")
    if token is not None:
        env["PANDA_AUTH_ID_TOKEN"] = token
    return env


def without_auth(env: dict[str, str]) -> dict[str, str]:
    """The same environment with no token and no PANDA_AUTH (x509 mode)."""
    return {k: v for k, v in env.items() if k not in ("PANDA_AUTH", "PANDA_AUTH_VO", "PANDA_AUTH_ID_TOKEN")}


@pytest.fixture(params=["real", "local"])
def auth_case(request: pytest.FixtureRequest) -> Iterator[tuple[str, Backend, Backend, Backend]]:
    """(name, valid, wrong-token, no-credentials) backends of one relay."""
    stack: RealStack = request.getfixturevalue("realstack")
    foreign = mint(stack, "--group", "Rubin", "--untrusted-key")
    if request.param == "real":
        good = oidc_env(stack, mint(stack, "--group", "Rubin"))
        server: str | None = stack.idds_server
    else:
        service: LocalService = request.getfixturevalue("local_service")
        good, server = dict(service.env), None
    wrong = {**good, "PANDA_AUTH_ID_TOKEN": foreign}
    yield (
        request.param,
        Backend(request.param, good, server),
        Backend(request.param, wrong, server),
        Backend(request.param, without_auth(good), server),
    )


def test_valid_token(auth_case: tuple[str, Backend, Backend, Backend]) -> None:
    name, good, _, _ = auth_case
    with good.active():
        api = good.api()
        assert api.ping() == (0, [True, {"Status": "OK"}])
        request_id = payload(api.submit(chain_workflow(unique_name("token"))))
        (row,) = payload(api.get_requests(request_id=request_id))
        assert enum_name(row["status"]) in ("New", "Transforming") and row["username"]
    if name == "real":  # the identity comes from the token's name claim alone
        assert row["username"] == "Test User"


def test_wrong_token(auth_case: tuple[str, Backend, Backend, Backend]) -> None:
    _, _, wrong, _ = auth_case
    with wrong.active():
        status, text = wrong.api().ping()
    assert status == 255 and str(text).startswith(AUTH_FAILED), text


def test_missing_credentials(auth_case: tuple[str, Backend, Backend, Backend]) -> None:
    name, _, _, bare = auth_case
    with bare.active():
        ret = bare.api().ping()
    if name == "real":  # no DN and no token: the relay refuses in its reply body
        assert ret == (0, [False, "SSL secure connection is required"])
    else:  # the local service answers HTTP 403 (doc/local-vs-real.md)
        assert ret[0] == 255 and str(ret[1]).startswith(AUTH_FAILED), ret


def test_real_token_checks(realstack: RealStack) -> None:
    """The real relay's own refusals: VO group and audience."""
    cases = {
        "not in the Rubin group": (mint(realstack), "Not a member of the Rubin group"),
        "other audience": (mint(realstack, "--group", "Rubin", "--audience", "other"), "Invalid token"),
    }
    for label, (token, expected) in cases.items():
        backend = Backend("real", oidc_env(realstack, token), realstack.idds_server)
        with backend.active():
            status, text = backend.api().ping()
        assert status == 255 and str(text).startswith(AUTH_FAILED) and expected in str(text), (label, text)


def test_service_with_bad_credentials(auth_case: tuple[str, Backend, Backend, Backend]) -> None:
    """PanDAService reports an authentication failure, not a crash."""
    from lsst.ctrl.bps import WmsStates
    from lsst.ctrl.bps.panda import PanDAService
    from lsst.ctrl.bps.panda.run_control import PING_AUTH_FAILED

    _, good, wrong, bare = auth_case
    with good.active():
        assert PanDAService({"iddsServer": good.idds_server} if good.idds_server else {}).ping() == (0, None)
    for backend in (wrong, bare):
        config = {"iddsServer": backend.idds_server} if backend.idds_server else {}
        with backend.active():
            svc = PanDAService(config)
            status, message = svc.ping()
            assert status == PING_AUTH_FAILED, (status, message)
            state, message = svc.get_status("1")
        assert state is WmsStates.UNKNOWN and message
