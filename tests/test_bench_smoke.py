# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The benchmark in ``bench/`` works: workflow shape, floor, relay stand-in,
and one tiny end-to-end run (300 jobs). No timing is asserted here; the CI
ratio check (``bench/check_ratio.py``) does that on 10k jobs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_prepare_submit import floor  # noqa: E402
from check_ratio import within_limit  # noqa: E402
from relay_standin import RelayStandIn, relay_environment  # noqa: E402
from synthetic_workflow import JOBS_PER_BLOCK, SHAPES, build_workflow  # noqa: E402

pytestmark = pytest.mark.timeout(300)

_CLIENT = """
import json, sys
from idds.common.utils import json_dumps
from pandaclient import idds_api
api = idds_api.get_api(json_dumps, compress=True, manager=True)
print(json.dumps([api.ping(), api.submit({"payload": "x" * 5000}, username=None)]))
"""


def test_workflow_has_exact_size_and_bps_shape(tmp_path: Path) -> None:
    n_jobs = 2 * JOBS_PER_BLOCK + 7
    workflow = build_workflow(n_jobs, tmp_path, shape="short")
    assert len(workflow) == n_jobs
    assert len(workflow.labels) == 15
    assert workflow.labels[0] == "pipetaskInit"
    assert workflow.get_final().name == "finalJob"
    # Fan-in from every exposure of a block, and the diamonds inside one.
    assert len(list(workflow.predecessors("assembleCoadd_9813_1"))) == 8
    assert sorted(workflow.predecessors("consolidateSourceTable_100001_3")) == [
        "makeWarp_100001_3",
        "transformSourceTable_100001_3",
    ]
    node_ids = {workflow.get_job(name).cmdvals.get("qgraphNodeId") for name in workflow}
    assert len(node_ids) == n_jobs  # one distinct quantum per job
    qgraph = workflow.get_file("runQgraphFile")
    assert Path(qgraph.src_uri).stat().st_size > 0
    assert workflow.get_job_inputs("calibrate_100000_0")[0].name == "runQgraphFile"


_REALISTIC_NAME = re.compile(
    r"(?P<uuid>[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})_(?P<label>[A-Za-z]+)_[0-9a-z_]+"
)


def test_realistic_workflow_names_and_cmdvals_as_bps_transform(tmp_path: Path) -> None:
    """Realistic shape: ``{quantum uuid}_{label}_{data id}`` names of 50 to
    100 characters, one cmdvals entry per ``{name}`` of the arguments, the
    quantum UUID both in the name and in ``qgraphNodeId``; same graph as
    the short shape."""
    n_jobs = 2 * JOBS_PER_BLOCK + 7
    workflow = build_workflow(n_jobs, tmp_path)
    short = build_workflow(n_jobs, tmp_path, shape="short")
    assert len(workflow) == n_jobs and workflow.labels == short.labels
    assert workflow.number_of_edges() == short.number_of_edges()
    for name in workflow:
        if name == "pipetaskInit":
            continue
        job = workflow.get_job(name)
        match = _REALISTIC_NAME.fullmatch(name)
        assert match, name
        assert 50 <= len(name) <= 100, name
        assert match["uuid"] == job.cmdvals["qgraphNodeId"] and match["label"] == job.label
        assert set(re.findall(r"{([^}]+)}", job.arguments)) == set(job.cmdvals)
    coadd = next(n for n in workflow if "_assembleCoadd_" in n)
    assert re.search(r"_assembleCoadd_9813_[0-9]+_[ugrizy]_$", coadd)  # no visit: bps leaves a trailing _
    assert len(list(workflow.predecessors(coadd))) == 8
    diamond = next(n for n in workflow if "_consolidateSourceTable_" in n)
    parents = sorted(workflow.get_job(p).label for p in workflow.predecessors(diamond))
    assert parents == ["makeWarp", "transformSourceTable"]
    data_id = diamond.split("_", 2)[2]
    assert all(p.endswith(data_id) for p in workflow.predecessors(diamond))


@pytest.mark.parametrize("shape", SHAPES)
def test_workflow_is_deterministic_and_rejects_bad_input(tmp_path: Path, shape: str) -> None:
    first = build_workflow(200, tmp_path, shape=shape)
    second = build_workflow(200, tmp_path, shape=shape)
    assert list(first) == list(second)
    assert [first.get_job(n).cmdvals for n in first] == [second.get_job(n).cmdvals for n in second]
    with pytest.raises(ValueError, match="n_jobs"):
        build_workflow(1, tmp_path, shape=shape)
    with pytest.raises(ValueError, match="shape"):
        build_workflow(200, tmp_path, shape="long")


def test_floor_encodes_every_command_with_its_parents(tmp_path: Path) -> None:
    workflow = build_workflow(100, tmp_path, shape="short")
    records = json.loads(floor(workflow))
    assert len(records) == 100
    by_name = {record["name"]: record for record in records}
    calibrate = by_name["calibrate_100000_2"]
    assert calibrate["parents"] == ["characterizeImage_100000_2"]
    assert bytes.fromhex(calibrate["cmd"]).decode().endswith("--qgraph-node-id {qgraphNodeId}")


def test_floor_handles_realistic_names(tmp_path: Path) -> None:
    workflow = build_workflow(100, tmp_path)
    records = json.loads(floor(workflow))
    assert [record["name"] for record in records] == list(workflow.nodes)
    calibrate = next(record for record in records if "_calibrate_" in record["name"])
    (parent,) = calibrate["parents"]
    assert "_characterizeImage_" in parent and parent.split("_", 2)[2] == calibrate["name"].split("_", 2)[2]
    command = bytes.fromhex(calibrate["cmd"]).decode()
    assert command.startswith("${CTRL_MPEXEC_DIR}/bin/pipetask {runPreCmdOpts} run-qbb {butlerConfig}")


def test_standin_answers_panda_client_and_counts_bytes(tmp_path: Path) -> None:
    with RelayStandIn() as relay:
        env = dict(os.environ, **relay_environment(relay.port, tmp_path))
        proc = subprocess.run(
            [sys.executable, "-c", _CLIENT], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        ping, submit = json.loads(proc.stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/stats", timeout=30) as reply:
            stats = json.loads(reply.read())
    assert ping == [0, [True, {"Status": "OK"}]]
    assert submit[0] == 0 and submit[1][0] is True and submit[1][1] > 0
    assert [entry["command"] for entry in stats] == ["ping", "submit"]
    assert stats[1]["json_bytes"] > 5000 > stats[1]["gzip_bytes"]


def test_ratio_limit_is_target_plus_half() -> None:
    assert within_limit(4.5)
    assert not within_limit(4.51)
    assert not within_limit(2.0, target=1.0, margin=0.5)


@pytest.mark.parametrize("shape", SHAPES)
def test_bench_runs_end_to_end_at_300_jobs(tmp_path: Path, shape: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_prepare_submit.py"), "--jobs", "300", "--repeats", "1"]
        + ["--work-dir", str(tmp_path), "--shape", shape],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["n_jobs"] == 300 and line["shape"] == shape
    assert line["requests"] >= 1
    assert line["wire_gzip_bytes_per_job"] > 0
    assert line["wire_json_bytes_per_job"] > line["wire_gzip_bytes_per_job"]
    assert line["ratio_to_floor"] > 0 and line["floor_s"] > 0
    assert line["cpu_ratio_to_floor"] > 0 and line["floor_cpu_s"] > 0
    # The run quantum graph was staged to the distribution endpoint.
    assert list((tmp_path / "dist").glob("*/bench_run.qg"))


def test_bench_reuses_a_kept_work_dir(tmp_path: Path) -> None:
    """A second run in the same ``--work-dir`` reuses the pickled workflow
    and gives its runs new submit and distribution directories."""
    command = [sys.executable, str(BENCH / "bench_prepare_submit.py"), "--jobs", "100", "--repeats", "1"]
    for _ in range(2):
        proc = subprocess.run(
            command + ["--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=240
        )
        assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("workflow_*.pickle"))) == 1
    assert len(list((tmp_path / "dist").iterdir())) == 2


def test_check_ratio_reads_the_clock_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    """The CI guard runs the benchmark on the realistic shape and judges
    the CPU-time ratio by default, the wall-clock one when asked."""
    import check_ratio

    assert check_ratio.main(["--jobs", "300", "--repeats", "1", "--target", "1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = json.loads(out[0])
    assert line["shape"] == "realistic"
    assert out[
        1
    ] == f"OK: prepare+submit = {line['cpu_ratio_to_floor']:.2f} x floor at 300 realistic jobs, " + (
        "cpu time (limit 1500.00)"
    )
    assert check_ratio.main(["--jobs", "300", "--repeats", "1", "--target", "0.001", "--clock", "wall"]) == 1
    assert capsys.readouterr().out.splitlines()[1].startswith("FAIL:")


def test_stage_breakdown_times_every_stage() -> None:
    """The stage timer runs prepare+submit through the stand-in and reports
    every stage it wraps, nested stages no larger than their parents."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "stage_breakdown.py"), "--jobs", "300", "--repeats", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    stages = {
        fields[0]: float(fields[1]) for fields in (line.split() for line in proc.stdout.splitlines()[1:])
    }
    expected = {
        "prepare",
        "submit",
        "flatten",
        "plan",
        "plan.describe",
        "encode",
        "encode.map_entries",
        "write",
    }
    assert expected | {"transport.submit", "stage", "encode.json_dumps"} <= set(stages)
    assert all(value >= 0 for value in stages.values())
    assert stages["plan.describe"] <= stages["plan"] <= stages["prepare"]
    assert stages["encode.map_entries"] <= stages["encode"] <= stages["prepare"]
    assert stages["transport.submit"] <= stages["submit"]


def test_final_gate_cost_compares_both_rules(tmp_path: Path) -> None:
    """``final_gate_cost`` translates with both rules: the replaced one
    gates on fewer works, the package's on every main work."""
    import final_gate_cost

    sinks = final_gate_cost.measure("sinks", 300, tmp_path)
    every = final_gate_cost.measure("all", 300, tmp_path)
    assert sinks["works"] == every["works"]
    assert every["clauses"] == every["works"] - 1  # all but the final work
    assert 0 < sinks["clauses"] < every["clauses"]
    assert every["json_bytes"] > sinks["json_bytes"]
