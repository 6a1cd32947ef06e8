# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The PanDA cache: the transport's upload and the local service's endpoints.

Uploads go through panda-client's ``putFile`` (via the transport), downloads
through panda-client's ``getFile`` and the edge-node archive fetcher, against
a ``panda-local`` daemon started by the module fixture.
"""

from __future__ import annotations

import os
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest
from local_harness import LocalService

from lsst.ctrl.bps.panda.constants import CACHE_SIZE_LIMIT, CACHE_UPLOAD_PATH
from lsst.ctrl.bps.panda.edgenode.utils import download_extract_archive
from lsst.ctrl.bps.panda.exceptions import CacheUploadError
from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport, RetryPolicy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def exports(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The service's client environment, applied to this process."""
    values = service.exports
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _archive(directory: Path, text: str = "echo cached\n") -> Path:
    script = directory / "custom.sh"
    script.write_text(text)
    archive = directory / f"jobO.{uuid.uuid4()}.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(script, arcname=script.name)
    return archive


def _root(exports: dict[str, str]) -> str:
    return exports["PANDA_URL_SSL"].removesuffix("/server/panda")


def _token(service: LocalService) -> str:
    import json

    return json.loads(Path(service.layout.token_file).read_text())["id_token"]


def test_env_names_the_cache(exports: dict[str, str]) -> None:
    assert exports["PANDACACHE_URL"] == exports["PANDA_URL_SSL"]


def test_upload_then_download_through_panda_client(
    service: LocalService, exports: dict[str, str], tmp_path: Path
) -> None:
    archive = _archive(tmp_path)
    url = PanDARelayTransport().put_cache_file(str(archive))
    assert url == f"{exports['PANDACACHE_URL']}/cache/{archive.name}"
    stored = Path(service.layout.cache_dir) / archive.name
    assert stored.read_bytes() == archive.read_bytes()
    assert oct(stored.stat().st_mode & 0o777) == "0o600"

    import pandaclient.Client as client

    target = tmp_path / "got.tar.gz"
    assert client.getFile(archive.name, output_path=str(target)) == (0, True)
    assert target.read_bytes() == archive.read_bytes()

    work = tmp_path / "work"
    work.mkdir()
    download_extract_archive(url, str(work))  # what a worker does with the URL
    assert (work / "custom.sh").read_text() == "echo cached\n"


def test_same_name_is_replaced(service: LocalService, exports: dict[str, str], tmp_path: Path) -> None:
    first = _archive(tmp_path, "echo one\n")
    PanDARelayTransport().put_cache_file(str(first))
    other = tmp_path / "other"
    other.mkdir()
    os.replace(_archive(other, "echo two\n"), first)
    PanDARelayTransport().put_cache_file(str(first))
    assert (Path(service.layout.cache_dir) / first.name).read_bytes() == first.read_bytes()


def test_missing_file_is_404(exports: dict[str, str], tmp_path: Path) -> None:
    import pandaclient.Client as client

    status, _ = client.getFile("jobO.absent.tar.gz", output_path=str(tmp_path / "x"))
    assert status == 404
    assert not (tmp_path / "x").exists()


def test_wrong_token_is_refused(
    exports: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", "x.y.z")
    with pytest.raises(CacheUploadError, match=r"HTTP 403: .*Token authentication failed"):
        PanDARelayTransport().put_cache_file(str(_archive(tmp_path)))


def test_too_large_is_refused_before_sending(exports: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "jobO.big.tar.gz"
    big.write_bytes(b"\0" * (CACHE_SIZE_LIMIT + 1))
    with pytest.raises(CacheUploadError, match=r"jobO\.big\.tar\.gz.*above the PanDA cache limit"):
        PanDARelayTransport().put_cache_file(str(big))


def test_missing_local_file_names_it(exports: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(CacheUploadError, match="nothere.tar.gz"):
        PanDARelayTransport().put_cache_file(str(tmp_path / "nothere.tar.gz"))


def test_unreachable_server_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsst.ctrl.bps.panda.exceptions import PanDAUnreachableError

    url = "http://127.0.0.1:9/server/panda"
    for name in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("PANDA_AUTH", raising=False)
    pauses: list[float] = []
    transport = PanDARelayTransport(retry=RetryPolicy(attempts=2), sleep=pauses.append)
    with pytest.raises(PanDAUnreachableError, match="putFile"):
        transport.put_cache_file(str(_archive(tmp_path)))
    assert len(pauses) == 1


def test_server_refuses_oversize_upload(service: LocalService, exports: dict[str, str]) -> None:
    data = b"\0" * (CACHE_SIZE_LIMIT + 1)
    reply = httpx.post(
        _root(exports) + CACHE_UPLOAD_PATH,
        headers={"Authorization": f"Bearer {_token(service)}"},
        files={"file": ("jobO.huge.tar.gz", data, "application/octet-stream")},
    )
    assert reply.status_code == 413
    assert reply.json()["success"] is False
    assert not (Path(service.layout.cache_dir) / "jobO.huge.tar.gz").exists()


def test_no_path_traversal(service: LocalService, exports: dict[str, str]) -> None:
    root = _root(exports)
    headers = {"Authorization": f"Bearer {_token(service)}"}
    upload = root + CACHE_UPLOAD_PATH
    reply = httpx.post(upload, headers=headers, files={"file": ("../../evil.sh", b"x", "text/plain")})
    assert reply.json()["success"] is True  # only the base name counts
    assert (Path(service.layout.cache_dir) / "evil.sh").exists()
    assert not (Path(service.layout.root).parent / "evil.sh").exists()
    reply = httpx.post(upload, headers=headers, files={"file": (".token", b"x", "text/plain")})
    assert reply.status_code == 400
    for path in ("/cache/..%2Fpanda_config%2F.token", "/cache/%2E%2E", "/server/panda/cache/.token",
                 "/cache/../panda_local.sqlite3"):  # fmt: skip
        assert httpx.get(root + path).status_code == 404, path
