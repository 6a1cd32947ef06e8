# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Wall time of ``panda-local`` commands that only ask the running service.

Starts a local service in a temporary state directory, then times each
command run as the installed console script (``panda-local`` beside this
Python) and, for comparison, as ``python -m lsst.ctrl.bps.panda.local.cli``
(what the console script imported before it deferred ``lsst.ctrl.bps``'s
``__init__``). Prints one JSON line per command and form: median, min and max
seconds over ``--repeat`` runs.

Usage::

    .venv/bin/python bench/cli_startup.py [--repeat 7] [status env ...]
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

from lsst.ctrl.bps.panda.local.testing import LocalService


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


def main() -> None:
    """Time the commands and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commands", nargs="*", default=["status", "env"])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as state:
        service = LocalService(state, workers=1).start()
        try:
            for command in args.commands:
                for form, prefix in _forms().items():
                    times = time_command([*prefix, *command.split(), "--state-dir", state], args.repeat)
                    print(json.dumps({
                        "command": f"panda-local {command}", "form": form, "repeat": args.repeat,
                        "median_s": round(statistics.median(times), 3),
                        "min_s": round(min(times), 3), "max_s": round(max(times), 3),
                    }), flush=True)  # fmt: skip
        finally:
            service.stop()


if __name__ == "__main__":
    main()
