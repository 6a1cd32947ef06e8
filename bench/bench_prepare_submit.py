# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Benchmark ``PanDAService.prepare`` + ``submit`` against a floor.

For each N it builds the synthetic workflow of `synthetic_workflow` once
in the ``--shape`` asked for (``realistic``, the default: bps's
``{quantum uuid}_{label}_{data id}`` job names and command values;
``short``: the first benchmark's short names), pickled into the work
directory, then measures, each in a separate fresh
process and ``--repeats`` times:

* the *floor*: iterate the jobs, hex-encode each command line and JSON-dump
  a minimal record with its parents;
* the plugin: ``PanDAService(config).prepare(config, gw, out_prefix)`` and
  ``submit`` with the PanDA relay replaced at the HTTP boundary by
  `relay_standin` (panda-client serialisation and gzip included, network
  excluded), peak RSS growth during both, and the bytes on the wire.

Modules whose import cost does not depend on N (pandaclient, idds) are
imported before the clock starts. One JSON line per N goes to stdout with
medians, µs per job and ``ratio_to_floor`` (wall clock); the same ratio of
the processes' CPU time (all threads: the plugin's compressing thread
counts, the relay stand-in does not) is ``cpu_ratio_to_floor``, steadier
than the wall clock on a machine shared with other work.
``--other-python PATH`` measures the same figures with another interpreter,
e.g. a venv holding another implementation of ``lsst.ctrl.bps.panda``,
under the key ``other``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WORKER_TIMEOUT = 3600
_PRELOAD = (
    "pandaclient.Client",
    "pandaclient.idds_api",
    "httpx",
    "httpcore",
    "idds.common.utils",
    "idds.workflowv2.workflow",
    "idds.doma.workflowv2.domapandawork",
)


# ---------------------------------------------------------------- worker side


def _status_kb(field: str) -> int:
    """Return a ``/proc/self/status`` memory field in KiB (0 if absent)."""
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> tuple[int, bool]:
    """Reset the peak-RSS mark if allowed; return (RSS KiB, reset)."""
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        return _status_kb("VmRSS"), True
    except OSError:
        return _status_kb("VmRSS"), False


def _peak_rss_kb(was_reset: bool) -> int:
    """Return the peak RSS since the reset (or since start) in KiB."""
    peak = _status_kb("VmHWM") if was_reset else 0
    return peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def load_workflow(spec: dict[str, Any]) -> Any:
    """Load the pickled workflow of a spec, or rebuild it if that fails.

    Parameters
    ----------
    spec : `dict` [`str`, `~typing.Any`]
        Worker spec with ``pickle``, ``n_jobs`` and ``work_dir``.

    Returns
    -------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The synthetic workflow.
    """
    gc.disable()
    try:
        with open(spec["pickle"], "rb") as stream:
            return pickle.load(stream)
    except Exception as exc:
        logging.warning("Rebuilding the workflow (%s)", exc)
        from synthetic_workflow import build_workflow

        return build_workflow(spec["n_jobs"], Path(spec["work_dir"]), shape=spec["shape"])
    finally:
        gc.enable()


def floor(workflow: Any) -> str:
    """Run the floor: one hex-encoded command and parents per job, as JSON.

    Jobs are visited in graph order (no topological sort), the cheapest
    natural iteration, so the floor is a strict lower bound.

    Parameters
    ----------
    workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow.

    Returns
    -------
    document : `str`
        The JSON document.
    """
    records = []
    for name in workflow.nodes:
        job = workflow.get_job(name)
        command = f"{job.executable.src_uri} {job.arguments}"
        records.append(
            {"name": name, "cmd": command.encode().hex(), "parents": list(workflow.predecessors(name))}
        )
    return json.dumps(records)


def _bps_config(spec: dict[str, Any]) -> Any:
    """Return the `BpsConfig` a ``bps submit`` of the workflow would use."""
    from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig

    work = Path(spec["work_dir"])
    run = f"bench_{spec['n_jobs']}_{spec['tag']}"
    submit = work / "submit" / run
    submit.mkdir(parents=True, exist_ok=True)
    dist = work / "dist" / run
    dist.mkdir(parents=True, exist_ok=True)
    settings = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "operator": "bench",
        "project": "bench",
        "campaign": "bench",
        "payloadName": "bench",
        "uniqProcName": run,
        "submitPath": str(submit),
        "computeSite": "BENCH_SITE",
        "fileDistributionEndPoint": f"file://{dist}/",
        "fileDistributionEndPointDefault": f"file://{dist}/",
        "whenSaveJobQgraph": "NEVER",
        "bpsUseShared": True,
    }
    return BpsConfig(settings, defaults=BPS_DEFAULTS, wms_service_class_fqn=settings["wmsServiceClass"])


def _wire_stats(port: int) -> list[dict[str, Any]]:
    """Fetch (and clear) the request sizes the stand-in saw."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=120) as reply:
        return json.loads(reply.read())


@contextmanager
def _maybe_profile(path: str | None) -> Iterator[None]:
    """Profile the block into ``path`` when given."""
    if not path:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def run_service(spec: dict[str, Any]) -> dict[str, Any]:
    """Time prepare and submit of the installed plugin in this process.

    Parameters
    ----------
    spec : `dict` [`str`, `~typing.Any`]
        Worker spec (``n_jobs``, ``pickle``, ``work_dir``, ``tag``,
        ``port``, optional ``profile``).

    Returns
    -------
    result : `dict` [`str`, `~typing.Any`]
        Seconds, peak RSS growth and wire sizes.
    """
    import importlib

    for module in _PRELOAD:
        importlib.import_module(module)
    from lsst.ctrl.bps.panda import PanDAService

    workflow = load_workflow(spec)
    config = _bps_config(spec)
    out_prefix = config["submitPath"]
    gc.collect()
    rss0, was_reset = _reset_peak_rss()
    with _maybe_profile(spec.get("profile")):
        cpu_start = time.process_time()
        start = time.perf_counter()
        service = PanDAService(config)
        prepared = service.prepare(config, workflow, out_prefix=out_prefix)
        middle = time.perf_counter()
        service.submit(prepared)
        end = time.perf_counter()
        cpu_s = time.process_time() - cpu_start
    peak = _peak_rss_kb(was_reset)
    requests = [r for r in _wire_stats(spec["port"]) if r["command"] != "ping"]
    return {
        "prepare_s": middle - start,
        "submit_s": end - middle,
        "cpu_s": cpu_s,
        "rss_growth_kb": max(peak - rss0, 0),
        "requests": len(requests),
        "gzip_bytes": sum(r["gzip_bytes"] for r in requests),
        "json_bytes": sum(r["json_bytes"] for r in requests),
    }


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the floor in this process.

    Parameters
    ----------
    spec : `dict` [`str`, `~typing.Any`]
        Worker spec (``n_jobs``, ``pickle``, ``work_dir``).

    Returns
    -------
    result : `dict` [`str`, `~typing.Any`]
        Seconds and size of the floor document.
    """
    workflow = load_workflow(spec)
    gc.collect()
    cpu_start = time.process_time()
    start = time.perf_counter()
    document = floor(workflow)
    seconds = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    return {"floor_s": seconds, "floor_cpu_s": cpu_s, "floor_bytes": len(document)}


def worker_main(spec_path: str) -> None:
    """Run one measurement described by a JSON spec file; write the result.

    Parameters
    ----------
    spec_path : `str`
        Path of the spec; the result goes to ``spec["result"]``.
    """
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    if spec["mode"] == "build":
        gc.disable()
        from synthetic_workflow import build_workflow

        workflow = build_workflow(spec["n_jobs"], Path(spec["work_dir"]), shape=spec["shape"])
        with open(spec["pickle"], "wb") as stream:
            pickle.dump(workflow, stream, protocol=pickle.HIGHEST_PROTOCOL)
        result: dict[str, Any] = {"jobs": len(workflow)}
    elif spec["mode"] == "floor":
        result = run_floor(spec)
    else:
        result = run_service(spec)
    Path(spec["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------- driver side


class Bench:
    """Runs the measurements of one benchmark invocation.

    Parameters
    ----------
    work_dir : `pathlib.Path`
        Directory for pickles, submit and distribution directories.
    port : `int`
        Port of the relay stand-in.
    env : `dict` [`str`, `str`]
        Environment for the worker processes.
    """

    def __init__(self, work_dir: Path, port: int, env: dict[str, str]) -> None:
        self.work_dir = work_dir
        self.port = port
        self.env = env
        # Continue the numbering of a kept work directory: each number names
        # a run, and its submit and distribution directories must be new.
        self._count = len(list(work_dir.glob("spec_*.json")))

    def run_worker(self, python: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Run one fresh worker process and return its result.

        Parameters
        ----------
        python : `str`
            Interpreter to run it with.
        spec : `dict` [`str`, `~typing.Any`]
            What to measure (``mode`` and its inputs).

        Returns
        -------
        result : `dict` [`str`, `~typing.Any`]
            The worker's result.
        """
        self._count += 1
        spec_path = self.work_dir / f"spec_{self._count}.json"
        result_path = self.work_dir / f"result_{self._count}.json"
        full = dict(spec, work_dir=str(self.work_dir), port=self.port, result=str(result_path))
        full.setdefault("tag", str(self._count))
        spec_path.write_text(json.dumps(full))
        proc = subprocess.run(
            [python, str(BENCH_DIR / "bench_prepare_submit.py"), "--worker", str(spec_path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT,
        )
        if proc.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"{spec['mode']} worker ({python}) failed:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(result_path.read_text())

    def pickle_path(self, n_jobs: int, shape: str) -> Path:
        """Build the workflow of N jobs once and return its pickle.

        Parameters
        ----------
        n_jobs : `int`
            Number of jobs.
        shape : `str`
            Workflow shape (`synthetic_workflow.SHAPES`).

        Returns
        -------
        path : `pathlib.Path`
            The pickle file.
        """
        path = self.work_dir / f"workflow_{shape}_{n_jobs}.pickle"
        if not path.exists():
            spec = {"mode": "build", "n_jobs": n_jobs, "shape": shape, "pickle": str(path)}
            self.run_worker(sys.executable, spec)
        return path


def _median(results: list[dict[str, Any]], key: str) -> float:
    """Return the median of one field over repeated results."""
    return statistics.median(r[key] for r in results)


def summarise(n_jobs: int, runs: list[dict[str, Any]], floor_s: float, floor_cpu_s: float) -> dict[str, Any]:
    """Reduce repeated service runs to medians and per-job figures.

    Parameters
    ----------
    n_jobs : `int`
        Number of jobs.
    runs : `list` [`dict` [`str`, `~typing.Any`]]
        Results of `run_service`.
    floor_s : `float`
        Median floor seconds of the same invocation.
    floor_cpu_s : `float`
        Median floor CPU seconds of the same invocation.

    Returns
    -------
    summary : `dict` [`str`, `~typing.Any`]
        Medians and ratios.
    """
    total = statistics.median(r["prepare_s"] + r["submit_s"] for r in runs)
    return {
        "prepare_s": round(_median(runs, "prepare_s"), 4),
        "submit_s": round(_median(runs, "submit_s"), 4),
        "prepare_submit_s": round(total, 4),
        "us_per_job": round(total / n_jobs * 1e6, 2),
        "ratio_to_floor": round(total / floor_s, 2),
        "cpu_ratio_to_floor": round(_median(runs, "cpu_s") / floor_cpu_s, 2),
        "peak_rss_growth_kb_per_job": round(_median(runs, "rss_growth_kb") / n_jobs, 3),
        "wire_gzip_bytes_per_job": round(_median(runs, "gzip_bytes") / n_jobs, 1),
        "wire_json_bytes_per_job": round(_median(runs, "json_bytes") / n_jobs, 1),
        "requests": runs[0]["requests"],
        "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def measure(
    bench: Bench, n_jobs: int, repeats: int, other_python: str | None, shape: str = "realistic"
) -> dict[str, Any]:
    """Measure one N: floor, this implementation and optionally another.

    Parameters
    ----------
    bench : `Bench`
        The invocation's runner.
    n_jobs : `int`
        Number of jobs.
    repeats : `int`
        Fresh processes per figure (medians are reported).
    other_python : `str` or `None`
        Interpreter of another implementation to measure too.
    shape : `str`, optional
        Workflow shape (`synthetic_workflow.SHAPES`).

    Returns
    -------
    line : `dict` [`str`, `~typing.Any`]
        The JSON line for this N.
    """
    spec = {"n_jobs": n_jobs, "shape": shape, "pickle": str(bench.pickle_path(n_jobs, shape))}
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
    floors, runs, others = [], [], []
    # Interleaved, so that a change of machine speed during the run moves
    # the floor and the implementations alike.
    for i in range(repeats):
        floors.append(bench.run_worker(sys.executable, dict(spec, mode="floor")))
        profile = f"{profile_dir}/service_{n_jobs}_{i}.prof" if profile_dir else None
        runs.append(bench.run_worker(sys.executable, dict(spec, mode="service", profile=profile)))
        if other_python:
            others.append(bench.run_worker(other_python, dict(spec, mode="service")))
    floor_s = _median(floors, "floor_s")
    floor_cpu_s = _median(floors, "floor_cpu_s")
    line: dict[str, Any] = {
        "n_jobs": n_jobs,
        "shape": shape,
        "repeats": repeats,
        "floor_s": round(floor_s, 4),
        "floor_us_per_job": round(floor_s / n_jobs * 1e6, 2),
        "floor_cpu_s": round(floor_cpu_s, 4),
    }
    line.update(summarise(n_jobs, runs, floor_s, floor_cpu_s))
    if other_python:
        line["other"] = summarise(n_jobs, others, floor_s, floor_cpu_s)
        line["other"].update(interpreter_versions(other_python))
        line["speedup_vs_other"] = round(line["other"]["prepare_submit_s"] / line["prepare_submit_s"], 2)
    return line


def interpreter_versions(python: str) -> dict[str, str]:
    """Name an interpreter by versions, not by its path on this machine.

    Parameters
    ----------
    python : `str`
        The interpreter.

    Returns
    -------
    versions : `dict` [`str`, `str`]
        ``python_version`` and the ``lsst-ctrl-bps-panda`` it has
        (``plugin_version``).
    """
    code = (
        "import sys, importlib.metadata as m; print(sys.version.split()[0], m.version('lsst-ctrl-bps-panda'))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"python_version": out[0], "plugin_version": out[1]}


@contextmanager
def standin_process(work_dir: Path) -> Iterator[int]:
    """Run `relay_standin` as a separate process; yield its port.

    Parameters
    ----------
    work_dir : `pathlib.Path`
        Directory for the port file.

    Yields
    ------
    port : `int`
        The stand-in's port on 127.0.0.1.
    """
    port_file = work_dir / "relay.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "relay_standin.py"), "--port-file", str(port_file)]
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("relay stand-in did not start")
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_bench(
    jobs: list[int],
    repeats: int,
    work_dir: Path | None = None,
    other_python: str | None = None,
    shape: str = "realistic",
) -> Iterator[dict[str, Any]]:
    """Run the benchmark; yield one result line per N as it completes.

    Parameters
    ----------
    jobs : `list` [`int`]
        Workflow sizes.
    repeats : `int`
        Fresh processes per figure.
    work_dir : `pathlib.Path`, optional
        Work directory (kept); a temporary one (removed) by default.
    other_python : `str`, optional
        Interpreter of another implementation to measure as well.
    shape : `str`, optional
        Workflow shape (`synthetic_workflow.SHAPES`).

    Yields
    ------
    line : `dict` [`str`, `~typing.Any`]
        Figures for one N.
    """
    with tempfile.TemporaryDirectory(prefix="bench_panda_") as tmp:
        work = Path(work_dir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        from relay_standin import relay_environment

        with standin_process(work) as port:
            env = dict(os.environ, **relay_environment(port, work))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
            bench = Bench(work, port, env)
            for n_jobs in jobs:
                yield measure(bench, n_jobs, repeats, other_python, shape)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000], help="workflow sizes N")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure")
    parser.add_argument("--work-dir", type=Path, help="keep pickles and submit dirs here")
    parser.add_argument("--other-python", help="interpreter with another lsst.ctrl.bps.panda")
    parser.add_argument(
        "--shape",
        choices=("realistic", "short"),
        default="realistic",
        help="job names and command values as bps makes them (realistic) or the first benchmark's short ones",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return
    for line in run_bench(args.jobs, args.repeats, args.work_dir, args.other_python, args.shape):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
    main()
