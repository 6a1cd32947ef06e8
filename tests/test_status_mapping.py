"""Tests of the iDDS/PanDA status -> WmsStates table."""

import json
import logging
from pathlib import Path

import pytest
from idds.common.constants import ContentStatus, RequestStatus, TransformStatus

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import idds_model
from lsst.ctrl.bps.panda import status_mapping as sm

ACTIVE_WMS_STATES = {WmsStates.UNREADY, WmsStates.READY, WmsStates.PENDING, WmsStates.RUNNING}

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("member", list(RequestStatus), ids=lambda m: m.name)
def test_every_request_status_is_mapped(member, caplog):
    with caplog.at_level(logging.WARNING):
        state = sm.request_state(member.name)
    assert state is not WmsStates.UNKNOWN
    assert not caplog.records


@pytest.mark.parametrize("member", list(TransformStatus), ids=lambda m: m.name)
def test_every_transform_status_is_mapped(member, caplog):
    with caplog.at_level(logging.WARNING):
        state = sm.transform_state(member.name)
    assert state is not WmsStates.UNKNOWN
    assert not caplog.records


@pytest.mark.parametrize("member", list(ContentStatus), ids=lambda m: m.name)
def test_every_content_status_is_mapped(member):
    assert sm.content_state(member.name) is not WmsStates.UNKNOWN


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("Finished", WmsStates.SUCCEEDED),
        ("SubFinished", WmsStates.FAILED),
        ("Failed", WmsStates.FAILED),
        ("Expired", WmsStates.FAILED),
        ("Cancelled", WmsStates.DELETED),
        ("Suspended", WmsStates.HELD),
        ("Transforming", WmsStates.RUNNING),
        ("New", WmsStates.PENDING),
    ],
)
def test_request_and_transform_agree_on_shared_names(name, state):
    assert sm.request_state(name) is state
    assert sm.transform_state(name) is state


def test_values_that_differ_between_enums_are_resolved_per_enum():
    # 23: Throttling (request) vs Queue (transform); 25: transforms only.
    assert sm.enum_name(23, RequestStatus) == "Throttling"
    assert sm.enum_name(23, TransformStatus) == "Queue"
    assert sm.transform_state(25) is WmsStates.UNREADY
    assert sm.request_state(25) is WmsStates.UNKNOWN


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("Available", WmsStates.SUCCEEDED),
        ("Mapped", WmsStates.SUCCEEDED),
        ("FakeAvailable", WmsStates.SUCCEEDED),
        ("Failed", WmsStates.FAILED),
        ("FinalFailed", WmsStates.FAILED),
        ("SubAvailable", WmsStates.FAILED),
        ("FinalSubAvailable", WmsStates.FAILED),
        ("Missing", WmsStates.PRUNED),
        ("Lost", WmsStates.PRUNED),
        ("Deleted", WmsStates.PRUNED),
        ("Processing", WmsStates.RUNNING),
        ("Activated", WmsStates.READY),
        ("New", WmsStates.UNREADY),
        ("Cancelled", WmsStates.DELETED),
    ],
)
def test_content_states(name, state):
    assert sm.content_state(name) is state


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("finished", WmsStates.SUCCEEDED),
        ("failed", WmsStates.FAILED),
        ("running", WmsStates.RUNNING),
        ("transfering", WmsStates.RUNNING),
        ("activated", WmsStates.READY),
        ("defined", WmsStates.PENDING),
        ("cancelled", WmsStates.DELETED),
        ("Finished", WmsStates.SUCCEEDED),
    ],
)
def test_job_states(status, state):
    assert sm.job_state(status) is state


def test_unknown_names_give_unknown_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lsst.ctrl.bps.panda.status_mapping"):
        assert sm.request_state("Exploded") is WmsStates.UNKNOWN
        assert sm.transform_state(None) is WmsStates.UNKNOWN
        assert sm.content_state("Vanished") is WmsStates.UNKNOWN
        assert sm.job_state("zombie") is WmsStates.UNKNOWN
        assert sm.job_state(None) is WmsStates.UNKNOWN
    assert len(caplog.records) == 5
    assert "Exploded" in caplog.records[0].getMessage()


def test_enum_name_accepts_every_wire_form():
    wire = {
        "class": "RequestStatus",
        "module": "idds.common.constants",
        "attributes": {"_value_": 4, "_name_": "SubFinished", "_sort_order_": 4, "_loading": False},
    }
    assert sm.enum_name(wire) == "SubFinished"
    assert sm.enum_name({"attributes": {"_value_": 9}}, RequestStatus) == "Cancelled"
    assert sm.enum_name({"attributes": {"_value_": 9}}) is None
    assert sm.enum_name("Transforming") == "Transforming"
    assert sm.enum_name(RequestStatus.Failed) == "Failed"
    assert sm.enum_name(3, RequestStatus) == "Finished"
    assert sm.enum_name(999, RequestStatus) is None
    assert sm.enum_name(True, RequestStatus) is None
    assert sm.enum_name(None) is None
    assert sm.enum_name({"attributes": "junk"}) is None
    assert sm.request_state(wire) is WmsStates.FAILED


def test_terminal_and_active_sets_partition_request_states():
    names = {m.name for m in RequestStatus}
    assert sm.TERMINAL_REQUEST_STATES | sm.ACTIVE_REQUEST_STATES == names
    assert not sm.TERMINAL_REQUEST_STATES & sm.ACTIVE_REQUEST_STATES


def test_idds_model_terminal_sets_agree_with_the_state_table():
    for status in idds_model.REQUEST_TERMINAL:
        assert sm.request_state(status.name) not in ACTIVE_WMS_STATES
    for status in idds_model.TRANSFORM_TERMINAL:
        assert sm.transform_state(status.name) not in ACTIVE_WMS_STATES
    for status in idds_model.JOB_TERMINAL:
        assert sm.content_state(status.name) not in ACTIVE_WMS_STATES
    assert idds_model.REQUEST_FINAL == idds_model.REQUEST_TERMINAL - {RequestStatus.Suspended}


def test_idds_model_counts_every_content_status_in_one_bucket():
    for status in ContentStatus:
        assert idds_model.bucket_of(status) in idds_model.COUNTER_BUCKETS
    for bucket, status in idds_model.BUCKET_STATUS.items():
        assert idds_model.bucket_of(status) == bucket
    assert set(idds_model.BUCKET_STATUS) == set(idds_model.COUNTER_BUCKETS)


def test_recorded_rows_map_to_known_states():
    text = (DATA / "relay-get_requests-detail.response.json").read_text()
    flag, rows = json.loads(text)
    assert flag is True
    assert rows
    for row in rows:
        assert sm.request_state(row["status"]) is not WmsStates.UNKNOWN
        assert sm.transform_state(row["transform_status"]) is not WmsStates.UNKNOWN
