# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Wall time of ``panda-local`` commands that only ask the running service.

Starts a local service in a temporary state directory and runs a 20-job
workflow to its end (``{run}`` in a command is its id), then times each
command run as the installed console script (``panda-local`` beside this
Python) and, for comparison, as ``python -m lsst.ctrl.bps.panda.local.cli``
(what the console script imported before it deferred ``lsst.ctrl.bps``'s
``__init__``). Prints one JSON line per command and form: median, min and max
seconds over ``--repeat`` runs.

With ``--start N`` it also times N ``panda-local start`` runs (until the
service answers) on new state directories.

Usage::

    .venv/bin/python bench/cli_startup.py [--repeat 7] [--start 3] [status ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The local-service harness lives with the tests (tests/local_harness.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from local_harness import JobDef, LocalService, WorkDef, build_workflow


def _forms() -> dict[str, list[str]]:
    script = os.path.join(os.path.dirname(sys.executable), "panda-local")
    return {
        "console script": [script],
        "python -m ...local.cli": [sys.executable, "-m", "lsst.ctrl.bps.panda.local.cli"],
    }


def time_command(argv: list[str], repeat: int) -> list[float]:
    """Run a command ``repeat`` times and return the wall times.

    Parameters
    ----------
    argv : `list` [`str`]
        The command.
    repeat : `int`
        Number of runs.

    Returns
    -------
    seconds : `list` [`float`]
        Wall time of each run.
    """
    env = dict(os.environ, PANDA_BEHIND_REAL_LB="1")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return times


def time_start(repeat: int) -> list[float]:
    """Time ``panda-local start`` (until it answers) on new state dirs.

    Parameters
    ----------
    repeat : `int`
        Number of start/stop cycles; only the starts are timed.

    Returns
    -------
    seconds : `list` [`float`]
        Wall time of each start.
    """
    script = _forms()["console script"][0]
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cli-startup-") as state:
            common = ["--state-dir", state]
            times.extend(time_command([script, "start", "--port", "0", "--workers", "1", *common], 1))
            time_command([script, "stop", *common], 1)
    return times


def _print(command: str, form: str, times: list[float]) -> None:
    print(json.dumps({
        "command": f"panda-local {command}", "form": form, "repeat": len(times),
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3), "max_s": round(max(times), 3),
    }), flush=True)  # fmt: skip


def _finished_run(service: LocalService) -> int:
    """Run 20 jobs to their end; return the run id (``{run}``)."""
    works = [WorkDef("bench_01_a", "true", tuple(JobDef(f"a{i}") for i in range(20)))]
    client = service.client()
    run = int(client.result("submit", build_workflow("bench_cli", works)))
    client.wait(run, timeout=120)
    return run


def main() -> None:
    """Time the commands and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commands", nargs="*", default=["status", "env", "jobs {run}", "watch {run}"])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--start", type=int, default=0, help="Also time this many start/stop cycles.")
    args = parser.parse_args()
    if args.start:
        _print("start", "console script", time_start(args.start))
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as state:
        service = LocalService(state, workers=1).start()
        try:
            run = _finished_run(service)
            for command in args.commands:
                argv = command.format(run=run).split()
                for form, prefix in _forms().items():
                    times = time_command([*prefix, *argv, "--state-dir", state], args.repeat)
                    _print(command, form, times)
        finally:
            service.stop()


if __name__ == "__main__":
    main()
