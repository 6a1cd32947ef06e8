# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Replies of the local service have the shape of the real relay's replies.

The recorded bytes in ``tests/data/local_wire/`` come from the real
panda-server 1.0.4 relay in front of idds-server 2.6.21 (copied from the
project's research samples). The recorded ``submit`` body is replayed to the
local service byte for byte; the local replies for the recorded calls must
have the same keys, in the same order, and the same JSON types, recursively.
The only tolerated differences are values the real service reports as null
while a request is young (see ``doc/local-vs-real.md``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_harness import LocalService, RelayClient

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).parent / "data" / "local_wire"

# The only keys whose type differs, measured against the recorded replies:
# the real service has null here while a request is young (counters not yet
# synchronised, no JEDI task, nothing finished); the local service always
# reports numbers, and finish dates once finished (doc/local-vs-real.md).
YOUNG_NULLS = {
    "request_id",  # null in real rows until the request has a transform
    "transform_workload_id",
    "processing_workload_id",
    "total_transforms",
    "finished_transforms",
    "subfinished_transforms",
    "failed_transforms",
    "processing_transforms",
    "transform_finished_at",
    "processing_finished_at",
    *(
        f"{p}_{k}_files"
        for p in ("input", "output")
        for k in ("preprocessing", "activated", "failed", "missing")
    ),
}


def _recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _shape_differences(real: Any, local: Any, path: str = "$") -> list[str]:
    """Every place where two JSON values differ in keys or types."""
    key = path.rsplit(".", 1)[-1]
    if real is None or local is None:
        if real is local or key in YOUNG_NULLS:
            return []
        return [f"{path}: {type(real).__name__} vs {type(local).__name__}"]
    if isinstance(real, dict) and isinstance(local, dict):
        if list(real) != list(local):
            return [f"{path}: keys differ: only real {sorted(set(real) - set(local))}, "
                    f"only local {sorted(set(local) - set(real))}, or order"]  # fmt: skip
        return [d for k in real for d in _shape_differences(real[k], local[k], f"{path}.{k}")]
    if isinstance(real, list) and isinstance(local, list):
        if all(isinstance(item, dict) for item in real + local):  # rows: one schema
            return (
                [d for item in local for d in _shape_differences(real[0], item, f"{path}[]")] if real else []
            )
        if len(real) != len(local):
            return [f"{path}: {len(real)} items vs {len(local)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(real, local, strict=True))
            for d in _shape_differences(a, b, f"{path}[{i}]")
        ]
    if type(real) is not type(local):
        return [f"{path}: {type(real).__name__} {real!r} vs {type(local).__name__} {local!r}"]
    return []


def _post(service: LocalService, outer: dict[str, Any]) -> httpx.Response:
    token = json.loads(Path(service.layout.token_file).read_text())["id_token"]
    return httpx.post(
        service.exports["PANDA_URL_SSL"] + "/relay_idds_command",
        content=gzip.compress(json.dumps(outer).encode()),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}", "Origin": "Rubin"},
        timeout=60,
    )


@pytest.fixture(scope="module")
def replayed(service: LocalService, client: RelayClient) -> int:
    """Request id of the recorded submit body, replayed byte for byte."""
    reply = _post(service, _recorded("relay-submit.request-body.json"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    flag, request_id = json.loads(reply.text)
    assert flag is True and isinstance(request_id, int)
    client.wait(request_id)
    return request_id


def test_ping_reply_bytes(service: LocalService) -> None:
    reply = _post(service, {"command_name": "ping", "manager": True})
    assert reply.status_code == 200
    assert reply.text == '[true, {"Status": "OK"}]'


def test_replayed_submit_runs_all_works(client: RelayClient, replayed: int) -> None:
    rows = client.result("get_requests", request_id=replayed, with_detail=True)
    assert [row["transform_name"] for row in rows] == ["wf_01_isr_01", "wf_02_calib_01", "wf_03_finalJob_01"]
    assert rows[0]["name"] == "wf_sample"
    jobs = client.jobs(replayed)
    assert sorted(jobs) == sorted(["isr_job0", "isr_job1", "calib_job0", "calib_job1",
                                   "pure_pseudoinput+qgraphNodeId:+qgraphId:"])  # fmt: skip


def test_get_requests_detail_has_the_real_shape(client: RelayClient, replayed: int) -> None:
    real = _recorded("relay-get_requests-detail.response.txt")
    status, local = client.call("get_requests", request_id=replayed, with_detail=True)
    assert status == 0
    assert _shape_differences(real, local) == []


def test_get_requests_nodetail_has_the_real_shape(client: RelayClient, replayed: int) -> None:
    real = _recorded("relay-get_requests-nodetail.response.txt")
    status, local = client.call("get_requests", request_id=replayed)
    assert status == 0
    assert _shape_differences(real, local) == []


def test_raw_reply_text_is_formatted_like_the_relay(service: LocalService, replayed: int) -> None:
    kwargs = json.dumps({"request_id": replayed, "with_detail": False, "with_metadata": False})
    reply = _post(service, {"command_name": "get_requests", "kwargs": kwargs, "manager": True})
    recorded = (DATA / "relay-get_requests-nodetail.response.txt").read_text()
    # Same separators, same key order: the text differs only in values.
    assert json.dumps(json.loads(reply.text)) == reply.text
    assert list(json.loads(reply.text)[1][0]) == list(json.loads(recorded)[1][0])
    assert reply.text.startswith('[true, [{"accessed_at": ')


def test_enum_and_date_encodings(client: RelayClient, replayed: int) -> None:
    real = _recorded("relay-get_requests-detail.response.txt")[1][0]
    local = client.result("get_requests", request_id=replayed, with_detail=True)[0]
    for key in ("status", "request_type", "transform_status", "processing_status", "output_coll_status"):
        assert local[key]["module"] == real[key]["module"] == "idds.common.constants"
        assert local[key]["class"] == real[key]["class"]
        assert list(local[key]["attributes"]) == list(real[key]["attributes"])
    assert local["status"]["attributes"]["_name_"] == "Finished"
    assert len(local["created_at"]) == len(real["created_at"])
    assert local["created_at"].endswith(" UTC")
    assert local["new_poll_period"].count(":") == real["new_poll_period"].count(":") == 2


def test_shape_check_catches_a_difference() -> None:
    real = _recorded("relay-get_requests-nodetail.response.txt")
    changed = json.loads(json.dumps(real))
    changed[1][0]["priority"] = "high"
    del changed[1][0]["scope"]
    assert len(_shape_differences(real, changed)) == 1
    del changed[1][0]["name"]
    changed[1][0]["scope"] = 1
    assert _shape_differences(real, changed)
