"""The PanDA cache through panda-client: the real relay and the local service.

panda-client's ``putFile`` posts a multipart upload to
``<PANDA_URL_SSL host>/api/v1/file_server/upload_cache_file`` and
``getFile`` downloads ``<PANDACACHE_URL host>/cache/<name>``. The real
replies are recorded in ``tests/data/relay-cache.json`` (rewritten when
``REALSTACK_RECORD=1``; otherwise the live replies must match the record).

What the real panda-server 1.0.4 relay answers (no PanDA database, no
httpd): the upload is written to its ``cache_dir`` under the client's base
name, then registering it in the (absent) database fails, so ``putFile``
returns ``(0, "ERROR : failed to register sandbox to DB ...")``;
``/cache/<name>`` is not a WSGI route (production httpd serves it as a
static alias), so ``getFile`` gets HTTP 403 ``method  is forbidden``. The
local service answers as a server with a database and httpd would:
``(0, "True")`` and the file.
"""

from __future__ import annotations

import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from rs_stack import Backend, RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(300)]

RECORD = Path(__file__).parents[1] / "data" / "relay-cache.json"


def _archive(tmp_path: Path) -> Path:
    script = tmp_path / "custom.sh"
    script.write_text("#!/bin/bash\necho cached\n")
    archive = tmp_path / f"jobO.{uuid.uuid4()}.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(script, arcname=script.name)
    return archive


def _client(monkeypatch: pytest.MonkeyPatch) -> Any:
    """panda-client's Client module, its import-time URLs set from the env."""
    from urllib.parse import urlparse

    import pandaclient.Client as client

    ssl = urlparse(os.environ["PANDA_URL_SSL"])
    cache = urlparse(os.environ.get("PANDACACHE_URL") or os.environ["PANDA_URL_SSL"])
    monkeypatch.setattr(client, "server_base_path_ssl", f"{ssl.scheme}://{ssl.netloc}/api/v1")
    monkeypatch.setattr(client, "cache_base_path_ssl", f"{cache.scheme}://{cache.netloc}/api/v1")
    monkeypatch.setattr(client, "baseURLCSRVSSL", cache.geturl())
    return client


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def exchange(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Upload an archive, download it back and a missing name; the replies."""
    archive = _archive(tmp_path)
    with backend.active():
        if "PANDACACHE_URL" not in backend.env:
            monkeypatch.setenv("PANDACACHE_URL", backend.env["PANDA_URL_SSL"])
        client = _client(monkeypatch)
        put = client.putFile(str(archive), False)
        target = tmp_path / "downloaded.tar.gz"
        got = client.getFile(archive.name, output_path=str(target))
        missing = client.getFile(f"jobO.{uuid.uuid4()}.tar.gz", output_path=str(tmp_path / "missing"))
    same = target.exists() and target.read_bytes() == archive.read_bytes()
    return {
        "archive": str(archive),
        "putFile": [put[0], _text(put[1])],
        "getFile": [got[0], _text(got[1]) if got[0] != 0 else "<file>"],
        "downloaded_same_bytes": same,
        "getFile_missing": [missing[0], str(_text(missing[1]))[:300]],
    }


def test_real_cache_replies_match_the_record(
    backends: dict[str, Backend], realstack: RealStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = exchange(backends["real"], tmp_path, monkeypatch)
    archive = Path(real.pop("archive"))
    stored = realstack.state_dir / "run" / "panda" / "cache" / archive.name
    assert stored.read_bytes() == archive.read_bytes()  # written before the DB registration fails
    if os.environ.get("REALSTACK_RECORD") == "1" or not RECORD.exists():
        RECORD.write_text(json.dumps(real, indent=2, sort_keys=True) + "\n")
    assert real == json.loads(RECORD.read_text())


def test_local_cache_round_trip(
    backends: dict[str, Backend], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = exchange(backends["local"], tmp_path, monkeypatch)
    local.pop("archive")
    assert local["putFile"] == [0, "True"]
    assert local["getFile"] == [0, "<file>"]
    assert local["downloaded_same_bytes"]
    assert local["getFile_missing"][0] == 404
