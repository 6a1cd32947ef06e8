#!/usr/bin/env python3
# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Make a demo directory to run the demo by hand (the README walkthrough).

Usage: ``python demo/prepare.py DIR [--detectors N]``.

Writes into DIR: ``pipeline.yaml``, ``bps_demo.yaml`` (rendered from
``bps_demo.yaml.in`` with absolute paths under DIR), ``bps_fail.yaml`` and a
butler repo ``DIR/repo`` (``make_repo.py``, with its ``detector_gains.txt``).
Submit from anywhere with ``bps submit DIR/bps_demo.yaml`` or
``bps submit DIR/bps_fail.yaml`` once the local service runs and
``eval "$(panda-local env)"`` is done.
"""

from __future__ import annotations

import argparse
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OVERLAY = HERE.parent / "config" / "bps_local.yaml"


def main() -> int:
    """Prepare the directory named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--detectors", type=int, default=3, help="detectors in the repo (default 3)")
    args = parser.parse_args()
    work = args.directory.expanduser().resolve()
    if work.exists() and any(work.iterdir()):
        parser.error(f"{work} exists and is not empty")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("pipeline.yaml", "bps_fail.yaml"):
        shutil.copy(HERE / name, work / name)
    values = {
        "PIPELINE": str(work / "pipeline.yaml"),
        "REPO": str(work / "repo"),
        "SUBMIT": str(work / "submit"),
        "DIST": str(work / "dist"),
        "LOCAL_OVERLAY": str(OVERLAY),
    }
    template = string.Template((HERE / "bps_demo.yaml.in").read_text())
    (work / "bps_demo.yaml").write_text(template.substitute(values))
    make_repo = [sys.executable, str(HERE / "make_repo.py"), values["REPO"], values["PIPELINE"]]
    subprocess.run([*make_repo, "--detectors", str(args.detectors)], check=True, env=dict(os.environ))
    print(f"demo directory {work}: bps_demo.yaml, bps_fail.yaml, repo/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
