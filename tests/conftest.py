"""Test-wide set-up: keep panda-client offline before anything imports it.

Also the local service fixtures shared by the modules that drive a
``panda-local`` daemon, `service` and `client`, and the existing plugin's
decoder for the modules that compare with it (`reference_decoder`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from local_harness import LocalService, RelayClient

os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
# Never let a test write into the real user's run index.
os.environ.setdefault(
    "CTRL_BPS_PANDA_RUN_INDEX",
    os.path.join(os.environ.get("TMPDIR", "/tmp"), "ctrl_bps_panda_test_runs.jsonl"),
)

from reference_decoder import reference_shadow, reference_wheel  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """A ``panda-local`` daemon (2 workers) for the module that asks for it.

    Started on a free loopback port in a temporary state directory on first
    use in a module, stopped after the module's last test.
    """
    from local_harness import LocalService  # only for the modules that use it

    with LocalService(str(tmp_path_factory.mktemp("panda-local")), workers=2) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service: LocalService) -> RelayClient:
    """The panda-client iDDS API pointed at the module's `service`."""
    return service.client()
