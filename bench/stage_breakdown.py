# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Where prepare + submit spend their time: µs per job for each stage.

Runs ``PanDAService.prepare`` and ``submit`` of the synthetic workflow
(`synthetic_workflow`) ``--repeats`` times in this process against the
relay stand-in (a separate process), with a timer around each stage
function, and prints the median µs per job of every stage over the
repeats after the first. Stages nest (``plan`` holds the ``plan.*``
below it, ``encode`` the ``encode.*``; ``transport.submit`` holds the
panda-client call with its gzip). Repeats in one process reuse freed
memory, so the totals are lower than `bench_prepare_submit`'s fresh-process
figures; use this for proportions, that for claims.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_prepare_submit as bench
from relay_standin import relay_environment

_SPENT: dict[str, float] = collections.defaultdict(float)


def _timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``function`` adding its run time to ``_SPENT[label]``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _SPENT[label] += time.perf_counter() - start

    return wrapper


def _instrument() -> None:
    """Put the timers around the stage functions."""
    from lsst.ctrl.bps.panda import (
        idds_transport,
        job_description,
        panda_service,
        panda_workflow,
        request_encoding,
        service_settings,
        workflow_plan,
    )

    settings_from_config = service_settings.ServiceSettings.__dict__["from_config"].__func__
    service_settings.ServiceSettings.from_config = classmethod(_timed("settings", settings_from_config))
    panda_workflow.flatten = _timed("flatten", panda_workflow.flatten)
    panda_workflow.plan_workflow = _timed("plan", panda_workflow.plan_workflow)
    workflow_plan.describe_jobs = _timed("plan.describe", job_description.describe_jobs)
    for name in ("_cut", "_pseudo_names", "_task_settings", "_runner_command"):
        setattr(workflow_plan, name, _timed(f"plan.{name}", getattr(workflow_plan, name)))
    panda_workflow.encode_request = _timed("encode", panda_workflow.encode_request)
    request_encoding.json_dumps = _timed("encode.json_dumps", request_encoding.json_dumps)
    for name in ("_build_workflow", "_add_map", "_new_work", "map_entries"):
        setattr(request_encoding, name, _timed(f"encode.{name}", getattr(request_encoding, name)))
    zipper = request_encoding.MapZipper
    zipper._take_oldest = _timed("encode.zip_wait", zipper._take_oldest)
    workflow_class = panda_workflow.PandaBpsWmsWorkflow
    workflow_class.write = _timed("write", workflow_class.write)
    panda_service.stage_files = _timed("stage", panda_service.stage_files)
    transport = idds_transport.PanDARelayTransport
    transport.submit = _timed("transport.submit", transport.submit)


def _run_once(workflow: Any, work_dir: Path, tag: str) -> tuple[float, float]:
    """Prepare and submit once; return (prepare, submit) seconds."""
    from lsst.ctrl.bps.panda import PanDAService

    config = bench._bps_config({"work_dir": str(work_dir), "n_jobs": len(workflow), "tag": tag})
    gc.collect()
    start = time.perf_counter()
    service = PanDAService(config)
    prepared = service.prepare(config, workflow, out_prefix=config["submitPath"])
    middle = time.perf_counter()
    service.submit(prepared)
    return middle - start, time.perf_counter() - middle


def breakdown(n_jobs: int, repeats: int, work_dir: Path, shape: str = "realistic") -> dict[str, float]:
    """Return the median µs per job of every stage.

    Parameters
    ----------
    n_jobs : `int`
        Workflow size.
    repeats : `int`
        Runs; the first one is not counted when there are more.
    work_dir : `pathlib.Path`
        Scratch directory.
    shape : `str`, optional
        Workflow shape (`synthetic_workflow.SHAPES`).

    Returns
    -------
    stages : `dict` [`str`, `float`]
        Stage to µs per job, ``prepare`` and ``submit`` first.
    """
    from synthetic_workflow import build_workflow

    for module in bench._PRELOAD:
        __import__(module)
    _instrument()
    workflow = build_workflow(n_jobs, work_dir, shape=shape)
    samples: dict[str, list[float]] = collections.defaultdict(list)
    for index in range(repeats):
        _SPENT.clear()
        prepare_s, submit_s = _run_once(workflow, work_dir, f"stage{index}")
        for label, seconds in {"prepare": prepare_s, "submit": submit_s, **_SPENT}.items():
            samples[label].append(seconds)
        shutil.rmtree(work_dir / "submit", ignore_errors=True)
        shutil.rmtree(work_dir / "dist", ignore_errors=True)
    counted = slice(1, None) if repeats > 1 else slice(None)
    return {label: statistics.median(values[counted]) / n_jobs * 1e6 for label, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    """Print the breakdown.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", choices=("realistic", "short"), default="realistic")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="stage_breakdown_") as tmp:
        work_dir = Path(tmp)
        with bench.standin_process(work_dir) as port:
            os.environ.update(relay_environment(port, work_dir))
            stages = breakdown(args.jobs, args.repeats, work_dir, args.shape)
    print(
        f"{args.jobs} jobs ({args.shape}), median of {max(args.repeats - 1, 1)} in-process runs, µs per job:"
    )
    for label, us in stages.items():
        print(f"  {label:22s} {us:7.2f}")


if __name__ == "__main__":
    main()
