# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Run the demo pipeline as an operator would, for the end-to-end tests.

Every step is a separate process: ``panda-local``, ``bps`` and the demo's
own helper scripts (``demo/make_repo.py``, ``demo/wait_run.py``).
`demo_service` renders the demo into a work directory, makes its butler
repository and runs a local service on a free loopback port for as long as
the ``with`` block lasts; `run` and `submit_and_wait` drive the commands.
"""

from __future__ import annotations

__all__ = ["BIN", "DEMO", "FAILED_DETECTOR", "ROOT", "demo_service", "run", "submit_and_wait"]

import json
import os
import re
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository."""

DEMO = ROOT / "demo"
"""The demo pipeline and its helper scripts."""

BIN = Path(sys.executable).parent
"""Where ``bps`` and ``panda-local`` of this environment are."""

FAILED_DETECTOR = 2
"""The detector whose quanta fail under ``demo/bps_fail.yaml`` (its gain is
missing from the repository `demo_service` makes)."""


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    """Run a command; fail the test with its output if it fails.

    Parameters
    ----------
    args : `list` [`str`]
        The command.
    env : `dict` [`str`, `str`]
        Its environment.
    cwd : `pathlib.Path`
        Its working directory.
    timeout : `float`, optional
        Seconds before it is killed.

    Returns
    -------
    output : `str`
        Its standard output followed by its standard error.
    """
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def _demo_env(work: Path) -> dict[str, str]:
    """The environment of the demo's commands, all paths below ``work``."""
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PANDA_BEHIND_REAL_LB="1",
        BPS_WMS_SERVICE_CLASS="lsst.ctrl.bps.panda.PanDAService",  # bps report --id has no submit file
        PIPELINE=str(work / "pipeline.yaml"),
        REPO=str(work / "repo"),
        SUBMIT=str(work / "submit"),
        DIST=str(work / "dist"),
        LOCAL_OVERLAY=str(ROOT / "config" / "bps_local.yaml"),
        CTRL_BPS_PANDA_RUN_INDEX=str(work / "runs.jsonl"),
    )
    return env


@contextmanager
def demo_service(work: Path, detectors: int) -> Iterator[dict[str, str]]:
    """Render the demo into ``work`` and run a local service meanwhile.

    ``work`` receives ``pipeline.yaml``, ``bps_fail.yaml``, the rendered
    ``bps_demo.yaml``, a butler repository (``repo``) with ``detectors``
    detectors and the service's state directory (``panda-local``).

    Parameters
    ----------
    work : `pathlib.Path`
        An empty directory.
    detectors : `int`
        Detectors in the repository.

    Yields
    ------
    env : `dict` [`str`, `str`]
        The demo's environment with the service's client variables.
    """
    shutil.copy(DEMO / "pipeline.yaml", work)
    shutil.copy(DEMO / "bps_fail.yaml", work)
    env = _demo_env(work)
    template = string.Template((DEMO / "bps_demo.yaml.in").read_text())
    (work / "bps_demo.yaml").write_text(template.substitute(env))
    run([sys.executable, str(DEMO / "make_repo.py"), env["REPO"], env["PIPELINE"],
         "--detectors", str(detectors)], env, work)  # fmt: skip
    state = str(work / "panda-local")
    run([str(BIN / "panda-local"), "start", "--state-dir", state, "--port", "0"], env, work)
    try:
        exports = json.loads(
            run([str(BIN / "panda-local"), "env", "--state-dir", state, "--json"], env, work)
        )
        env.update({key: str(value) for key, value in exports.items()})
        yield env
    finally:
        subprocess.run([str(BIN / "panda-local"), "stop", "--state-dir", state], env=env, timeout=120)


def submit_and_wait(work: Path, env: dict[str, str], submit_file: str) -> tuple[str, int, str]:
    """``bps submit``, then wait for the run to end.

    Parameters
    ----------
    work : `pathlib.Path`
        Directory of the submit file.
    env : `dict` [`str`, `str`]
        The environment `demo_service` yields.
    submit_file : `str`
        The submit file, relative to ``work``.

    Returns
    -------
    run_id : `str`
        The run id ``bps submit`` printed.
    status : `int`
        0 if the run succeeded, 1 if it failed (``demo/wait_run.py``).
    output : `str`
        What ``bps submit`` printed.
    """
    out = run([str(BIN / "bps"), "submit", submit_file], env, work)
    match = re.search(r"^Run Id: *(\S+)", out, re.MULTILINE)
    assert match, f"no Run Id in bps submit output:\n{out}"
    run_id = match.group(1)
    wait = subprocess.run(
        [sys.executable, str(DEMO / "wait_run.py"), run_id, "--timeout", "600", "--interval", "1"],
        env=env, cwd=work, capture_output=True, text=True, timeout=700,
    )  # fmt: skip
    assert wait.returncode in (0, 1), f"run {run_id} did not end:\n{wait.stdout}\n{wait.stderr}"
    return run_id, wait.returncode, out
