#!/usr/bin/env python3
# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Scheduling overhead of the local PanDA service per trivial job.

Submits one workflow of N jobs whose executable is ``true`` (default 10,000:
``--tasks`` chained tasks of N/tasks jobs, job i of a task depending on job i
of the task before, plus a final job behind an ``AndCondition``) to a fresh
``panda-local`` on a free loopback port, through panda-client, and times it
until the request is Finished. The floor is the same number of
``bash -c true`` processes, each with its own working directory and log
files, run directly on the same number of worker threads. The figure
reported is::

    overhead per job = (run time on the service - floor) / N

i.e. what the service adds to each job: database writes, dependency
release, condition firing, status derivation, the job wrapper. Not a test:
it prints one JSON document (``--json``) or a short table, and exits 1 when
the overhead is above ``--target-ms`` (default 5 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")

# The local-service harness lives with the tests (tests/local_harness.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from local_harness import (
    JobDef,
    LocalService,
    WorkDef,
    build_workflow,
)


def workflow_spec(n_jobs: int, n_tasks: int) -> list[WorkDef]:
    """Return chained tasks of ``true`` jobs plus a final job."""
    quotient, remainder = divmod(max(n_tasks, n_jobs - 1), n_tasks)
    works = []
    for t in range(n_tasks):
        name = f"bench_{t + 1:02d}_t{t}"
        size = quotient + (1 if t < remainder else 0)  # never more than the task before
        jobs = tuple(
            JobDef(f"t{t}_{i}", ((f"bench_{t:02d}_t{t - 1}", f"t{t - 1}_{i}"),) if t else ())
            for i in range(size)
        )
        works.append(WorkDef(name, "true", jobs))
    last = works[-1].task_name
    works.append(
        WorkDef(f"bench_{n_tasks + 1:02d}_final", "true", (JobDef("pure_pseudoinput"),), final_of=(last,))
    )
    return works


def floor(n_jobs: int, workers: int, root: Path) -> float:
    """Seconds to run n_jobs ``bash -c true`` in own dirs on the threads."""

    def one(i: int) -> int:
        workdir = root / f"{i // 1000}" / f"{i}"
        workdir.mkdir(parents=True)
        with open(workdir / "payload.stdout", "wb") as out, open(workdir / "payload.stderr", "wb") as err:
            proc = subprocess.Popen(["bash", "-c", "true"], cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)  # fmt: skip
        return proc.wait()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(one, range(n_jobs)))
    assert not any(codes)
    return time.perf_counter() - start


def run_service(n_jobs: int, n_tasks: int, workers: int, root: Path) -> dict[str, Any]:
    """Submit the workflow to a fresh service and time it to the end."""
    works = workflow_spec(n_jobs, n_tasks)
    total = sum(len(work.jobs) for work in works)
    workflow = build_workflow("bench_local_throughput", works)
    with LocalService(str(root / "state"), workers=workers) as service:
        client = service.client()
        start = time.perf_counter()
        request_id = client.result("submit", workflow)
        submitted = time.perf_counter()
        status = client.wait(request_id, timeout=3600, interval=0.5)
        ended = time.perf_counter()
        jobs = client.jobs(request_id)
    finished = sum(1 for row in jobs.values() if row["status"] == "Available")
    return {
        "jobs": total,
        "status": status,
        "jobs_finished": finished,
        "submit_s": round(submitted - start, 3),
        "run_s": round(ended - submitted, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the workflow (incl. final)")
    parser.add_argument("--tasks", type=int, default=4, help="chained tasks")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="jobs at once")
    parser.add_argument("--target-ms", type=float, default=5.0, help="limit on the overhead per job")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_local_") as tmp:
        root = Path(tmp)
        result = run_service(args.jobs, args.tasks, args.workers, root)
        result["floor_s"] = round(floor(result["jobs"], args.workers, root / "floor"), 3)
    result["workers"] = args.workers
    result["wall_ms_per_job"] = round(1000 * result["run_s"] / result["jobs"], 3)
    result["floor_ms_per_job"] = round(1000 * result["floor_s"] / result["jobs"], 3)
    result["overhead_ms_per_job"] = round(1000 * (result["run_s"] - result["floor_s"]) / result["jobs"], 3)
    ok = result["status"] == "Finished" and result["jobs_finished"] == result["jobs"]
    ok = ok and result["overhead_ms_per_job"] < args.target_ms
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
        print(f"{'target':>22}: overhead < {args.target_ms} ms/job: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
