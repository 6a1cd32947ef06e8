#!/usr/bin/env python3
# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Wait for a BPS run on PanDA to end, printing its job counts as it goes.

Usage: ``python wait_run.py RUN_ID [--timeout SECONDS] [--interval SECONDS]``.
Exits 0 when the run SUCCEEDED, 1 when it ended otherwise, 2 on timeout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import PanDAService

_TERMINAL = {WmsStates.SUCCEEDED, WmsStates.FAILED, WmsStates.DELETED}


def _progress_line(service: PanDAService, run_id: str) -> tuple[WmsStates, str]:
    """Return the run state and a one-line summary of its job counts."""
    reports, message = service.report(wms_workflow_id=run_id)
    if not reports:
        return WmsStates.UNKNOWN, message or "no report yet"
    report = reports[0]
    counts = {state.name: n for state, n in (report.job_state_counts or {}).items() if n}
    summary = " ".join(f"{name}={n}" for name, n in sorted(counts.items()))
    return report.state, f"{report.state.name:<10} jobs={report.total_number_jobs} {summary}"


def main(argv: list[str] | None = None) -> int:
    """Poll the run until it ends; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args(argv)
    # panda-client's HTTP library logs each request at INFO: keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    service = PanDAService({})
    deadline = time.monotonic() + args.timeout
    last = ""
    while time.monotonic() < deadline:
        state, line = _progress_line(service, args.run_id)
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] run {args.run_id}: {line}", flush=True)
            last = line
        if state in _TERMINAL:
            return 0 if state == WmsStates.SUCCEEDED else 1
        time.sleep(args.interval)
    print(f"run {args.run_id} did not end within {args.timeout:.0f} s", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
