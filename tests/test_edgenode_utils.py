# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Test of the edge-node compatibility shim."""

import tarfile
from pathlib import Path

from lsst.ctrl.bps.panda.edgenode.utils import download_extract_archive


def test_download_extract_archive(tmp_path: Path) -> None:
    (tmp_path / "custom.sh").write_text("echo hi\n")
    archive = tmp_path / "jobO.1.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(tmp_path / "custom.sh", arcname="custom.sh")
    target = tmp_path / "work"
    target.mkdir()
    download_extract_archive(f"file://{archive}", str(target))
    assert (target / "custom.sh").read_text() == "echo hi\n"
    assert not (target / archive.name).exists()
