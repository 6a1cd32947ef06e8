# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of PanDAService.prepare and PandaBpsWmsWorkflow through the public
interface, with a real BpsConfig read from a submit YAML."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from idds.common.utils import json_dumps, json_loads

from lsst.ctrl.bps import BPS_DEFAULTS, BpsConfig
from lsst.ctrl.bps.panda import PandaBpsWmsWorkflow
from lsst.ctrl.bps.panda.constants import SUBMIT_RECORD_FILENAME, WORKFLOW_JSON_FILENAME
from lsst.ctrl.bps.panda.exceptions import PanDAConfigError
from lsst.ctrl.bps.panda.panda_service import PanDAService
from lsst.ctrl.bps.panda.panda_workflow import workflow_labels
from lsst.ctrl.bps.panda.submit_record import SubmitRecord, find_submit_dir
from lsst.ctrl.bps.tests.gw_test_utils import make_3_label_workflow, make_3_label_workflow_noop_sort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from synthetic_workflow import build_workflow


def _config(tmp_path: Path, **values: object) -> BpsConfig:
    """A submit YAML as a user writes it, loaded as ``bps`` does: the
    plugin defaults are merged because wmsServiceClass names the plugin."""
    settings = {
        "wmsServiceClass": "lsst.ctrl.bps.panda.PanDAService",
        "computeSite": "SITE",
        "fileDistributionEndPoint": f"{tmp_path}/dist/{{uniqProcName}}",
        "submitPath": f"{tmp_path}/submit",
        "uniqProcName": "bench_300",
        "operator": "me",
    }
    settings.update(values)
    path = tmp_path / "submit.yaml"
    path.write_text(yaml.safe_dump(settings))
    return BpsConfig(str(path), defaults=BPS_DEFAULTS)


def _prepare(tmp_path: Path, workflow: object, **values: object) -> PandaBpsWmsWorkflow:
    config = _config(tmp_path, **values)
    prepared = PanDAService({}).prepare(config, workflow, str(tmp_path / "submit"))
    assert isinstance(prepared, PandaBpsWmsWorkflow)
    return prepared


def test_prepare_synthetic_through_public_interface(tmp_path: Path) -> None:
    workflow = build_workflow(300, tmp_path)
    prepared = _prepare(tmp_path, workflow)
    submit = tmp_path / "submit"
    assert prepared.distribution_endpoint == f"file://{tmp_path}/dist/bench_300/"
    assert prepared.files_to_stage == {
        "bench_run.qg": str(tmp_path / "bench_run.qg"),
        "final_job.bash": str(tmp_path / "final_job.bash"),
    }
    assert Path(prepared.request_cache).is_dir() and Path(prepared.request_cache).parent == submit
    assert prepared.settings.compute_site == "SITE"
    assert prepared.run_id is None
    files = {p.name for p in submit.iterdir() if p.is_file()}
    assert files == {SUBMIT_RECORD_FILENAME, WORKFLOW_JSON_FILENAME}
    assert not list(submit.rglob("*.pickle"))

    document = (submit / WORKFLOW_JSON_FILENAME).read_text()
    json.loads(document)
    loaded = json_loads(document)
    sent = prepared.idds_workflow.template.works
    assert {w.task_name for w in loaded.template.works.values()} == {w.task_name for w in sent.values()}
    for work in loaded.template.works.values():
        assert work.dependency_map == sent[work.get_internal_id()].dependency_map

    record = json.loads((submit / SUBMIT_RECORD_FILENAME).read_text())
    assert record["run_name"] == "bench_300" and record["run_id"] is None
    assert sum(task["jobs"] for task in record["tasks"].values()) == 301
    assert record["tasks"]["bench_300_01_pipetaskInit_01"] == {"label": "pipetaskInit", "jobs": 1}
    assert record["extra"]["operator"] == "bench"
    assert record["extra"]["site"] == "SITE"
    assert record["extra"]["endpoint"] == prepared.distribution_endpoint
    assert (
        sum(task.jobs for task in SubmitRecord.read(submit).tasks.values() if task.label == "isr")
        == 3 * 8 + 47
    )


def test_request_encoded_once_and_written_as_sent(tmp_path: Path) -> None:
    """prepare encodes the request once: the file holds exactly the text
    submit sends, every map in iDDS's zipped form, and equal to what the
    workflow serialises to."""
    prepared = _prepare(tmp_path, make_3_label_workflow("wf", True), uniqProcName="wf")
    request = prepared.request
    assert not request.split
    assert (tmp_path / "submit" / WORKFLOW_JSON_FILENAME).read_text() == request.text + "\n"
    assert request.text == json_dumps(prepared.idds_workflow)
    maps = re.findall(r'"_dependency_map": ("[^"]*"|\[)', request.text)
    assert maps and all(m.startswith('"idds_zip:') for m in maps)
    work = next(iter(json_loads(request.text).template.works.values()))
    assert work.dependency_map == [
        {"name": "pipetaskInit+qgraphNodeId:+qgraphId:", "order_id": 0, "dependencies": []}
    ]


def test_request_above_max_length_is_split_by_idds(tmp_path: Path) -> None:
    """A request longer than maxRequestLength is marked split (decided once,
    at prepare) and its workflow splits into steps with iDDS's own split."""
    prepared = _prepare(tmp_path, make_3_label_workflow("wf", True), uniqProcName="wf", maxRequestLength=1000)
    request = prepared.request
    assert request.split and len(request.text) > 1000 == request.max_request_length
    steps = prepared.idds_workflow.split_workflow_to_steps(
        request_cache=prepared.request_cache, max_request_length=1000
    )
    assert steps  # the maps are plain lists: iDDS moved each to the request cache
    assert len(list(Path(prepared.request_cache).rglob("*"))) > len(steps)


def test_record_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "runs.jsonl"
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(index))
    monkeypatch.setenv("PANDA_URL_SSL", "http://127.0.0.1:1/server/panda")
    prepared = _prepare(tmp_path, make_3_label_workflow("wf", True), uniqProcName="wf")
    prepared.record_submission(4242)
    assert prepared.run_id == "4242"
    assert SubmitRecord.read(tmp_path / "submit").run_id == 4242
    assert find_submit_dir(4242) == tmp_path / "submit"


def test_map_files_written_and_staged(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, make_3_label_workflow("wf", True), uniqProcName="wf", enableJobNameMap=True)
    path = tmp_path / "submit" / "panda_order_id_map.json"
    assert prepared.files_to_stage["panda_order_id_map.json"] == str(path)
    mapping = json.loads(path.read_text())
    assert mapping["label1"]["0"].startswith("label1_")
    assert set(mapping) == {"pipetaskInit", "label1", "label2", "label3", "finalJob"}

    prepared = _prepare(tmp_path, make_3_label_workflow("wf", False), uniqProcName="wf", enableQnodeMap=True)
    qnode = json.loads((tmp_path / "submit" / "qnode_map.json").read_text())
    assert qnode["PH:pipetaskInit"] == "pipetaskInit+qgraphNodeId:+qgraphId:"
    assert prepared.files_to_stage["qnode_map.json"] == str(tmp_path / "submit" / "qnode_map.json")


def test_prepare_with_plain_bps_config(tmp_path: Path) -> None:
    """BpsConfig(path) without any defaults still prepares (packaged ones)."""
    _config(tmp_path, uniqProcName="wf")
    config = BpsConfig(str(tmp_path / "submit.yaml"))
    prepared = PanDAService({}).prepare(config, make_3_label_workflow("wf", True), str(tmp_path / "submit"))
    assert prepared.settings.max_jobs_per_task == 10000
    assert json.loads((tmp_path / "submit" / WORKFLOW_JSON_FILENAME).read_text())


def test_prepare_names_missing_key(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config["computeSite"] = ""
    with pytest.raises(PanDAConfigError, match="computeSite"):
        PanDAService({}).prepare(config, make_3_label_workflow("wf", True), str(tmp_path / "submit"))


def test_workflow_labels() -> None:
    assert workflow_labels(make_3_label_workflow_noop_sort("wf", True)) == [
        "pipetaskInit",
        "label1",
        "label2",
        "label3",
        "finalJob",
    ]
