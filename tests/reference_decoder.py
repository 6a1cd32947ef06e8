# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The existing plugin's edge-node decoder, for tests that compare with it.

The ``reference_wheel`` and ``reference_shadow`` fixtures (session scope)
are registered by ``conftest.py``: the wheel is downloaded and unpacked
once per machine; the shadow runs its decoder without its whole stack.
"""

from __future__ import annotations

__all__ = ["REFERENCE", "reference_shadow", "reference_wheel"]

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

REFERENCE = "lsst-ctrl-bps-panda==30.2026.4300"


def _extract_reference(cache: Path) -> Path:
    """Download and unpack the reference wheel once per machine."""
    decoder = cache / "wheel/lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
    if decoder.exists():
        return cache / "wheel"
    staging = Path(tempfile.mkdtemp(dir=cache.parent))
    pip = [sys.executable, "-m", "pip", "download", REFERENCE, "--no-deps", "-q", "-d", str(staging)]
    try:
        subprocess.run(pip, check=True, capture_output=True, timeout=180)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"reference plugin not downloadable: {exc}")
    (wheel,) = staging.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging / "wheel")
    cache.mkdir(exist_ok=True)
    try:
        os.replace(staging / "wheel", cache / "wheel")
    except OSError:
        pass  # another worker unpacked it first
    return cache / "wheel"


@pytest.fixture(scope="session")
def reference_wheel() -> Path:
    cache = Path(tempfile.gettempdir()) / "ctrl_bps_panda_reference" / REFERENCE.replace("==", "-")
    cache.parent.mkdir(exist_ok=True)
    return _extract_reference(cache)


@pytest.fixture(scope="session")
def reference_shadow(reference_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the reference decoder unmodified, but without importing its whole
    stack (3 s per job): ``lsst.ctrl.bps`` and its ``panda.utils`` (only
    used for ``jobO`` archives, not exercised here) are replaced by empty
    stand-ins; every other line is the reference's own.
    """
    root = tmp_path_factory.mktemp("reference_shadow")
    package = root / "lsst/ctrl/bps/panda"
    package.mkdir(parents=True)
    # Regular packages extending their path, so that these come first and
    # lsst.resources is still found in site-packages.
    extend = "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"
    (root / "lsst/__init__.py").write_text(extend)
    (root / "lsst/ctrl/__init__.py").write_text(extend)
    (root / "lsst/ctrl/bps/__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "utils.py").write_text(
        "def download_extract_archive(*args, **kwargs):\n    raise RuntimeError\n"
    )
    (package / "edgenode").symlink_to(reference_wheel / "lsst/ctrl/bps/panda/edgenode")
    return root
