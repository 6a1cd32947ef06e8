"""Remote-build requests through the real relay and the local service.

The plugin's transport sends ``submit_build`` (a ``build_task`` workflow
made by ``request_encoding.encode_build_request``) and then
``update_build_request`` with a wrong signature. The real answers (relay
1.0.4 + iDDS 2.6.21 REST, no daemons, no JEDI) are recorded in
``tests/data/relay-build.json`` (rewritten when ``REALSTACK_RECORD=1``);
the local service must give the same kind of answer: a request id, a
request row named after the workflow, and a refusal of the bad signature.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from rs_helpers import unique_name
from rs_stack import Backend

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(300)]

RECORD = Path(__file__).parents[1] / "data" / "relay-build.json"


def _build_request(name: str) -> Any:
    from lsst.ctrl.bps.panda.remote_build import BuildTaskSettings
    from lsst.ctrl.bps.panda.request_encoding import encode_build_request

    settings = BuildTaskSettings(
        runner_command="echo build",
        site="LOCAL", cloud="LOCAL", queue=None, rss=2048, rss_max=4096, rss_retry_step=0,
        processing_type=None, priority=500, attempts=1,
    )  # fmt: skip
    return encode_build_request(
        name, "echo build http://127.0.0.1:1/cache/jobO.x.tar.gz submit.yaml", settings
    )


def exchange(backend: Backend) -> dict[str, Any]:
    """submit_build, the request's row, a refused update_build_request."""
    from lsst.ctrl.bps.panda.exceptions import IDDSRequestError
    from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport

    name = unique_name("build")
    with backend.active():
        transport = PanDARelayTransport(idds_host=backend.idds_server)
        request_id = transport.submit_build(_build_request(name))
        rows = transport.get_requests(request_id)
        try:
            update: Any = [
                "accepted",
                transport.update_build_request(request_id, "wrong", _build_request(name)),
            ]
        except IDDSRequestError as exc:  # the request id varies: N
            update = ["refused", re.sub(r"request_id: \d+", "request_id: N", exc.detail)[:200]]
    row = rows[0] if rows else {}
    return {
        "request_id_is_int": isinstance(request_id, int) and request_id > 0,
        "rows": len(rows),
        "name_matches": row.get("name") == name,
        "request_type": (row.get("request_type") or {}).get("attributes", {}).get("_name_"),
        "update_with_wrong_signature": update[0],
        "update_detail": update[1] if update[0] == "refused" else None,
    }


def test_real_build_replies_match_the_record(backends: dict[str, Backend]) -> None:
    real = exchange(backends["real"])
    if os.environ.get("REALSTACK_RECORD") == "1" or not RECORD.exists():
        RECORD.write_text(json.dumps(real, indent=2, sort_keys=True) + "\n")
    assert real == json.loads(RECORD.read_text())


def test_local_build_replies_agree(backends: dict[str, Backend]) -> None:
    real = json.loads(RECORD.read_text())
    local = exchange(backends["local"])
    for key in ("request_id_is_int", "rows", "name_matches", "request_type", "update_with_wrong_signature"):
        assert local[key] == real[key], (key, local, real)
