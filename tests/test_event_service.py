# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Event-service translation, checked against the existing plugin's.

``tests/data/event_service/existing_plugin.json`` was recorded by running
the existing plugin (lsst-ctrl-bps-panda from PyPI) with
``tests/data/event_service/record_existing_plugin.py`` on the workflow that
script builds; this package must give every work the same event-service
fields, dependency map and order-id map.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import recordings
from prepare_helpers import generate, make_config, staged_files, works

from lsst.ctrl.bps.panda.event_service import EventServiceSettings, parse_labels
from lsst.ctrl.bps.panda.exceptions import PanDAConfigError
from lsst.ctrl.bps.panda.service_settings import ServiceSettings

RECORDED = recordings.recorded("event_service")["scenarios"]
RECORDER = recordings.script("event_service", "record_existing_plugin")

WALLTIME_UNIT = 1
"""Seconds per ``requestWalltime`` unit in this package (seconds, as in the
recording and the existing plugin)."""


def _ours(tmp_path: Path, name: str, scenario: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Translate the recorded workflow with this package, as the recording
    did with the existing plugin (same keys, same runner command)."""
    walltime = {label: seconds // WALLTIME_UNIT for label, seconds in scenario["walltime"].items()}
    workflow = RECORDER.build_workflow(name, walltime)
    generated = generate(
        tmp_path,
        workflow,
        uniqProcName=name,
        runnerCommand=RECORDER.RUNNER,
        fileDistributionEndPoint=f"{tmp_path}/dist/",
        **scenario["config"],
    )
    records = []
    for work in works(generated):
        record = RECORDER.work_record(work)
        # This package writes the endpoint as a file:// URI.
        record["runner_tail"] = [w.replace(f"file://{tmp_path}", RECORDER.TMP) for w in record["runner_tail"]]
        records.append(record)
    return generated, records


def _sorted_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "dependencies": sorted(e["dependencies"], key=json.dumps)} for e in entries]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_works_match_existing_plugin(tmp_path: Path, name: str) -> None:
    scenario = RECORDED[name]
    _, ours = _ours(tmp_path, name, scenario)
    theirs = scenario["works"]
    assert [w["task_name"] for w in ours] == [w["task_name"] for w in theirs]
    for mine, recorded in zip(ours, theirs, strict=True):
        for key in ("es", "es_label", "max_events_per_job", "maxWalltime", "es_files"):
            assert mine[key] == recorded[key], (recorded["task_name"], key)
        # Endpoint, the order-id map among the files, and the runner's map
        # path (an empty files field is written differently on purpose).
        mine_tail, their_tail = mine["runner_tail"], recorded["runner_tail"]
        assert mine_tail[0] == their_tail[0]
        assert mine_tail[-1] == their_tail[-1]
        assert ("orderIdMapFilename:" in mine_tail[1]) == ("orderIdMapFilename:" in their_tail[1])
        assert _sorted_entries(mine["dependency_map"]) == _sorted_entries(recorded["dependency_map"])


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_order_id_map_matches_existing_plugin(tmp_path: Path, name: str) -> None:
    scenario = RECORDED[name]
    generated, _ = _ours(tmp_path, name, scenario)
    assert generated.order_id_map == scenario["order_id_map"]
    workflow = RECORDER.build_workflow(
        name, {label: s // WALLTIME_UNIT for label, s in scenario["walltime"].items()}
    )
    config = {
        "runnerCommand": RECORDER.RUNNER,
        "fileDistributionEndPoint": f"{tmp_path}/dist/",
        **scenario["config"],
    }
    staged = "panda_order_id_map.json" in staged_files(tmp_path, workflow, uniqProcName=name, **config)
    assert staged == ("orderIdMapFilename" in scenario["staged"])


def test_enable_event_service_switches_on_the_job_name_map(tmp_path: Path) -> None:
    config = make_config(tmp_path, enableEventService="isr")
    settings = ServiceSettings.from_config(config, ["isr"])
    assert settings.enable_job_name_map
    assert dict(settings.event_service.labels) == {"isr": 10}


def test_unset_event_service_leaves_works_alone(tmp_path: Path) -> None:
    settings = ServiceSettings.from_config(make_config(tmp_path), ["isr"])
    assert not settings.event_service.enabled
    assert not settings.enable_job_name_map


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("isr:x", "'x' is not a number"), ("isr,,calib", "empty label"), ("isr:0", "must be positive")],
)
def test_bad_enable_event_service_names_the_key(text: str, fragment: str) -> None:
    with pytest.raises(PanDAConfigError, match=fragment) as info:
        parse_labels(text, 10)
    assert "enableEventService" in str(info.value)


@pytest.mark.parametrize(("key", "value"), [("maxPayloadsPerPandaJob", "many"), ("maxWmsJobWalltime", -5)])
def test_bad_numbers_name_the_key(tmp_path: Path, key: str, value: Any) -> None:
    config = make_config(tmp_path, enableEventService="isr", **{key: value})
    with pytest.raises(PanDAConfigError, match=key):
        ServiceSettings.from_config(config, ["isr"])


def test_n_from_walltimes_is_the_floor() -> None:
    settings = EventServiceSettings.from_values("isr:50", 10, 3599)
    fields = settings.for_work("isr", 1200, 1200)
    assert (fields.enabled, fields.max_events, fields.walltime) == (True, 2, 2400)
    assert not settings.for_work("isr", 1800, 1800).enabled
