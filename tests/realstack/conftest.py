"""Fixtures of the realstack tier: the real PanDA relay and iDDS server.

The session fixture `realstack` builds (once, cached in a state
directory) and starts PostgreSQL, the iDDS 2.6.21 REST server and the
panda-server 1.0.4 relay on free loopback ports with the project's own
harness in ``realstack/`` (``up.sh``), applies the client environment
before anything imports ``pandaclient``, and stops everything with
``down.sh`` at the end of the session.

Missing prerequisites skip the tier; with ``REALSTACK_REQUIRED=1`` (CI)
they fail it. ``REALSTACK_KEEP=1`` leaves the stack running afterwards
(for debugging; stop it with ``realstack/down.sh STATE_DIR``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rs_helpers import Config
from rs_stack import (
    Backend,
    LocalService,
    RealStack,
    local_backend,
    patch_client_env,
    real_backend,
    run_harness,
    start_stack,
    unavailable,
)


@pytest.fixture(scope="session")
def realstack() -> Iterator[RealStack]:
    """The running real stack, client environment applied for the session."""
    if "pandaclient.Client" in sys.modules:
        print("realstack: pandaclient was imported before the fixture; patching its URLs", file=sys.stderr)
    stack = start_stack()
    mp = pytest.MonkeyPatch()
    try:
        stack.truncate()  # request ids restart at 1, no earlier session's requests
        patch_client_env(mp, stack.client_env())
        yield stack
    finally:
        mp.undo()
        if os.environ.get("REALSTACK_KEEP") != "1":
            proc = run_harness("down.sh", str(stack.state_dir), timeout=180)
            if proc.returncode != 0:
                print(f"realstack: down.sh failed:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
        _report_timings(stack)


def _report_timings(stack: RealStack) -> None:
    line = ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items())
    print(f"\nrealstack timings: {line}", file=sys.stderr)


@pytest.fixture(scope="session")
def local_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """``panda-local start --port 0`` in a temp dir, stopped afterwards."""
    exe = Path(sys.executable).parent / "panda-local"
    state = tmp_path_factory.mktemp("panda-local")
    base = [str(exe), "--help"]
    if subprocess.run(base, capture_output=True, check=False).returncode != 0:
        unavailable(f"{exe} does not run")
    start = [str(exe), "start", "--state-dir", str(state), "--port", "0", "--workers", "2"]
    proc = subprocess.run(start, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(f"panda-local start failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    try:
        out = subprocess.run([str(exe), "env", "--json", "--state-dir", str(state)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        yield LocalService(state, json.loads(out))
    finally:
        subprocess.run(
            [str(exe), "stop", "--state-dir", str(state)], capture_output=True, timeout=60, check=False
        )


@pytest.fixture(scope="session")
def backends(realstack: RealStack, local_service: LocalService) -> dict[str, Backend]:
    """Both relays, by name."""
    return {"real": real_backend(realstack), "local": local_backend(local_service)}


@pytest.fixture(params=["real", "local"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each relay in turn, active for the test."""
    if request.param == "real":
        chosen = real_backend(request.getfixturevalue("realstack"))
    else:
        chosen = local_backend(request.getfixturevalue("local_service"))
    with chosen.active():
        yield chosen


@pytest.fixture(scope="module")
def run_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A run index of this module only (request ids restart every session)."""
    path = tmp_path_factory.mktemp("run-index") / "runs.jsonl"
    mp = pytest.MonkeyPatch()
    mp.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(path))
    try:
        yield path
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def make_config(realstack: RealStack, run_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """BpsConfig factory: plugin defaults + the real stack's iddsServer."""
    from lsst.ctrl.bps import BpsConfig
    from lsst.ctrl.bps.panda import PanDAService

    base = tmp_path_factory.mktemp("bps")

    def make(name: str, **overrides: Any) -> Any:
        values = {
            "computeSite": "LOCAL",
            "fileDistributionEndPoint": f"file://{base}/dist/{{uniqProcName}}/",
            "uniqProcName": name,
            "submitPath": str(base / "submit" / name),
            "iddsServer": realstack.idds_server,
            **overrides,
        }
        return BpsConfig(values, defaults=PanDAService({}).defaults)

    return make
