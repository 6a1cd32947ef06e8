# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of file distribution (staging.py) on real temporary directories."""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsst.ctrl.bps.panda import staging
from lsst.ctrl.bps.panda.exceptions import StagingError
from lsst.ctrl.bps.panda.staging import stage_files
from lsst.resources import ResourcePath
from lsst.resources.file import FileResourcePath


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """A file, an executable and a nested directory tree."""
    src = tmp_path / "src"
    _write(src / "job.qgraph", "q" * 1000)
    _write(src / "run.sh", "#!/bin/bash\necho hi\n")
    os.chmod(src / "run.sh", 0o755)
    _write(src / "cfg" / "butler.yaml", "datastore: x\n")
    _write(src / "cfg" / "deep" / "deeper" / "leaf.txt", "leaf")
    _write(src / "cfg" / "deep" / "other.txt", "")
    return {
        "job.qgraph": str(src / "job.qgraph"),
        "bin/run.sh": str(src / "run.sh"),
        "cfg/": str(src / "cfg"),
    }


def _assert_tree(root: Path) -> None:
    assert (root / "job.qgraph").read_text() == "q" * 1000
    assert (root / "bin" / "run.sh").read_text() == "#!/bin/bash\necho hi\n"
    assert (root / "cfg" / "butler.yaml").read_text() == "datastore: x\n"
    assert (root / "cfg" / "deep" / "deeper" / "leaf.txt").read_text() == "leaf"
    assert (root / "cfg" / "deep" / "other.txt").read_text() == ""


def test_bare_path_nested(tmp_path: Path, sources: dict[str, str]) -> None:
    dest = tmp_path / "dist" / "run1"
    targets = stage_files(sources, str(dest), 2)
    _assert_tree(dest)
    assert targets == [
        ResourcePath(str(dest / "job.qgraph")).geturl(),
        ResourcePath(str(dest / "bin" / "run.sh")).geturl(),
        ResourcePath(str(dest / "cfg"), forceDirectory=True).geturl(),
    ]
    assert all(ResourcePath(t).exists() for t in targets)


def test_file_uri_endpoint(tmp_path: Path, sources: dict[str, str]) -> None:
    dest = tmp_path / "dist with space"
    targets = stage_files(sources, f"file://{dest}/", 1)
    _assert_tree(dest)
    assert all(t.startswith("file://") for t in targets)


def test_restage_overwrites(tmp_path: Path, sources: dict[str, str]) -> None:
    dest = tmp_path / "dist"
    stage_files(sources, str(dest), 2)
    Path(sources["job.qgraph"]).write_text("new")
    stage_files(sources, str(dest), 2)
    assert (dest / "job.qgraph").read_text() == "new"


def test_many_files_on_pool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = {}
    for i in range(400):
        files[f"d{i % 7}/f{i}.txt"] = _write(tmp_path / "src" / f"f{i}.txt", "x" * i)
    caplog.set_level(logging.INFO, logger="lsst.ctrl.bps.panda.staging")
    targets = stage_files(files, str(tmp_path / "dist"), 8)
    assert len(targets) == 400
    for i in range(400):
        assert (tmp_path / "dist" / f"d{i % 7}" / f"f{i}.txt").stat().st_size == i
    total = sum(range(400))
    messages = [r.getMessage() for r in caplog.records]
    assert any("400 file(s)" in m and f"{total} bytes" in m and m.startswith("Staged") for m in messages)


def test_failures_listed_together(tmp_path: Path, sources: dict[str, str]) -> None:
    dest = tmp_path / "dist"
    dest.mkdir()
    # A regular file where a directory is needed: no user, not even root,
    # can write below it.
    (dest / "blocked").write_text("not a directory")
    files = dict(sources)
    files["missing.qgraph"] = str(tmp_path / "nope" / "missing.qgraph")
    files["missing_dir/"] = str(tmp_path / "nope_dir")
    bad_src = _write(tmp_path / "src" / "bad.txt", "bad")
    files["blocked/bad.txt"] = bad_src
    with pytest.raises(StagingError) as caught:
        stage_files(files, str(dest), 3)
    failures = caught.value.failures
    assert set(failures) == {files["missing.qgraph"], files["missing_dir/"], bad_src}
    assert "does not exist" in failures[files["missing.qgraph"]]
    assert "does not exist" in failures[files["missing_dir/"]]
    assert "blocked/bad.txt" in failures[bad_src]
    message = str(caught.value)
    assert message.startswith("3 file(s) could not be staged")
    for name in failures:
        assert name in message
    # Good files were still copied: one error after every attempt.
    _assert_tree(dest)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path: Path, sources: dict[str, str]) -> None:
    dest = tmp_path / "dist"
    dest.mkdir()
    dest.chmod(0o500)
    try:
        with pytest.raises(StagingError) as caught:
            stage_files(sources, str(dest), 2)
    finally:
        dest.chmod(0o700)
    assert len(caught.value.failures) == 5


def test_verification_catches_short_copy(
    tmp_path: Path, sources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FileResourcePath.transfer_from

    def truncating(self: FileResourcePath, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        if self.basename() == "butler.yaml":
            with open(self.ospath, "w") as stream:
                stream.write("dat")

    monkeypatch.setattr(FileResourcePath, "transfer_from", truncating)
    with pytest.raises(StagingError) as caught:
        stage_files(sources, str(tmp_path / "dist"), 2)
    failures = caught.value.failures
    assert list(failures) == [str(Path(sources["cfg/"]) / "butler.yaml")]
    assert "3 bytes instead of 13" in next(iter(failures.values()))


def test_empty_mapping(tmp_path: Path) -> None:
    assert stage_files({}, str(tmp_path / "dist"), 4) == []


def test_empty_directory_and_uri_sources(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    source = _write(tmp_path / "src" / "a.txt", "abc")
    files = {"empty/": str(tmp_path / "empty"), "a.txt": f"file://{source}"}
    stage_files(files, str(tmp_path / "dist"), 2)
    assert (tmp_path / "dist" / "empty").is_dir()
    assert (tmp_path / "dist" / "a.txt").read_text() == "abc"


def test_transient_error_retried(
    tmp_path: Path, sources: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = FileResourcePath.transfer_from
    calls: list[str] = []

    def flaky(self: FileResourcePath, *args: object, **kwargs: object) -> None:
        calls.append(self.basename())
        if self.basename() == "job.qgraph" and calls.count("job.qgraph") == 1:
            raise ConnectionResetError("network blip")
        original(self, *args, **kwargs)

    monkeypatch.setattr(FileResourcePath, "transfer_from", flaky)
    monkeypatch.setattr(staging, "RETRY_DELAY", 0.0)
    stage_files(sources, str(tmp_path / "dist"), 2)
    _assert_tree(tmp_path / "dist")
    assert calls.count("job.qgraph") == 2
    assert "network blip (attempt 1 of 3, retrying)" in caplog.text


def test_progress_logged(
    tmp_path: Path, sources: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(staging, "PROGRESS_INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="lsst.ctrl.bps.panda.staging")
    stage_files(sources, str(tmp_path / "dist"), 1)
    assert "Staged 5/5 file(s), 1037/1037 bytes" in caplog.text


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    moto = pytest.importorskip("moto")
    from lsst.resources.s3utils import clean_test_environment_for_s3, getS3Client

    with clean_test_environment_for_s3(), moto.mock_aws():
        getS3Client().create_bucket(Bucket="distribution")
        yield "distribution"


def test_s3_endpoint(s3_bucket: str, sources: dict[str, str]) -> None:
    targets = stage_files(sources, f"s3://{s3_bucket}/run1", 4)
    assert targets == [
        f"s3://{s3_bucket}/run1/job.qgraph",
        f"s3://{s3_bucket}/run1/bin/run.sh",
        f"s3://{s3_bucket}/run1/cfg/",
    ]
    leaf = ResourcePath(f"s3://{s3_bucket}/run1/cfg/deep/deeper/leaf.txt")
    assert leaf.read() == b"leaf"
    assert ResourcePath(f"s3://{s3_bucket}/run1/cfg/deep/other.txt").size() == 0


def test_s3_missing_bucket(s3_bucket: str, sources: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "RETRY_DELAY", 0.0)
    with pytest.raises(StagingError) as caught:
        stage_files(sources, "s3://no-such-bucket/run1", 4)
    assert len(caught.value.failures) == 5
