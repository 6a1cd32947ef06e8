"""Tests of ``bps report`` support: rows -> `WmsRunReport`."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from fakes import DETAIL_TEMPLATE, NODETAIL_TEMPLATE, FakeIDDSServer, load_sample
from hypothesis import given, settings
from hypothesis import strategies as st
from idds.common.constants import ContentStatus, RequestStatus

from lsst.ctrl.bps import WmsRunReport, WmsStates
from lsst.ctrl.bps.panda.exceptions import IDDSRequestError, PanDAUnreachableError
from lsst.ctrl.bps.panda.reporting import build_run_reports, label_from_task_name, task_counts
from lsst.ctrl.bps.panda.submit_record import SubmitRecord, TaskRecord

S = WmsStates
CS = ContentStatus


@pytest.fixture(autouse=True)
def run_index(tmp_path, monkeypatch):
    """A private run index and a fixed service URL for every test."""
    index = tmp_path / "runs.jsonl"
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(index))
    monkeypatch.setenv("PANDA_URL_SSL", "https://relay.test:25443/server/panda")
    monkeypatch.delenv("PANDAMON_URL", raising=False)
    return index


def make_record(tmp_path, name, tasks, run_id=None, **extra):
    """Write a submit record (and index entry) for a run; return its dir."""
    submit = tmp_path / name
    submit.mkdir()
    record = SubmitRecord(
        run_name=name,
        submit_path=str(submit),
        tasks={task: TaskRecord(label, jobs) for task, (label, jobs) in tasks.items()},
        run_id=run_id,
        extra=extra,
    )
    record.write()
    record.register()
    return submit


def report_of(fake, wms_id, return_exit_codes=False):
    reports, message = build_run_reports(fake, str(wms_id), None, 2, return_exit_codes)
    assert message == ""
    assert len(reports) == 1
    return reports[0]


def assert_consistent(report: WmsRunReport):
    """Counts non-negative, labels add up to run_summary and totals."""
    expected = dict(part.split(":") for part in report.run_summary.split(";"))
    assert list(expected) == list(report.job_summary)
    for label, counts in report.job_summary.items():
        assert set(counts) == set(WmsStates)
        assert all(n >= 0 for n in counts.values())
        assert sum(counts.values()) == int(expected[label])
    assert set(report.job_state_counts) == set(WmsStates)
    assert sum(report.job_state_counts.values()) == report.total_number_jobs
    assert report.total_number_jobs == sum(int(n) for n in expected.values())


def nonzero(counts):
    return {state: n for state, n in counts.items() if n}


# ---------------------------------------------------------------- schema
def test_fake_rows_have_the_recorded_keys_and_types():
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_isr_01": 2, "wf_02_calib_01": 2})
    fake.set_jobs(rid, "wf_01_isr_01", {CS.Available: 1, CS.FinalFailed: 1})
    detail = fake.get_requests(rid, with_detail=True)
    nodetail = fake.get_requests(rid)
    assert len(detail) == 2
    for rows, recorded in (
        (detail, load_sample("relay-get_requests-detail.response.json")),
        (nodetail, [NODETAIL_TEMPLATE]),
    ):
        for row in rows:
            assert set(row) == set(recorded[0])
            for key, value in recorded[0].items():
                if value is not None and row[key] is not None:
                    assert type(row[key]) is type(value), key
                if isinstance(value, dict):
                    assert set(row[key]) == set(value)
                    assert set(row[key]["attributes"]) == set(value["attributes"])
    # Quirks of the real server are reproduced.
    assert detail[0]["output_missing_files"] is None
    young = fake.get_requests(fake.add_run("young", {"young_01_a_01": 1}, young=True), with_detail=True)
    assert young[0]["request_id"] is None and young[0]["transform_id"] is None
    assert set(young[0]) == set(DETAIL_TEMPLATE)


def test_recorded_sample_reports_without_a_record():
    rows = load_sample("relay-get_requests-detail.response.json")

    class Recorded:
        def get_requests(self, request_id=None, with_detail=False):
            return rows if with_detail else [NODETAIL_TEMPLATE]

        def get_contents_output_ext(self, request_id, workload_id):
            return {}

    report = report_of(Recorded(), 3)
    assert report.wms_id == "3"
    assert report.run == "wf_fresh"
    assert report.operator == "Test User"
    assert report.state is S.RUNNING
    assert list(report.job_summary) == ["isr", "calib"]
    assert report.total_number_jobs == 0  # no PanDA task yet: totals are 0
    assert_consistent(report)


# -------------------------------------------------------------- run states
@pytest.fixture
def three_label(tmp_path):
    """A run with chunks, labels ending in digits and a gated final job."""
    fake = FakeIDDSServer()
    tasks = {
        "wf_01_step_1_isr_01": ("step_1_isr", 3),
        "wf_01_step_1_isr_02": ("step_1_isr", 2),
        "wf_02_consolidate_2_01": ("consolidate_2", 2),
        "wf_03_finalJob_01": ("finalJob", 1),
    }
    rid = fake.add_run("wf", {t: n for t, (_, n) in tasks.items()}, gated=["wf_03_finalJob_01"])
    submit = make_record(
        tmp_path,
        "wf",
        tasks,
        run_id=rid,
        operator="jdoe",
        project="dev",
        campaign="c1",
        payload="p",
        site="SLAC",
    )
    return fake, rid, submit


def test_running_run_with_gated_final_job(three_label):
    fake, rid, submit = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 1, CS.Processing: 1, CS.Activated: 1})
    fake.set_jobs(rid, "wf_01_step_1_isr_02", {CS.PreProcessing: 1})
    report = report_of(fake, rid)
    assert report.state is S.RUNNING
    assert (report.wms_id, report.path, report.run) == (str(rid), str(submit), "wf")
    assert (report.operator, report.project, report.campaign, report.payload, report.site) == (
        "jdoe", "dev", "c1", "p", "SLAC"
    )  # fmt: skip
    assert report.run_summary == "step_1_isr:5;consolidate_2:2;finalJob:1"
    assert nonzero(report.job_summary["step_1_isr"]) == {
        S.SUCCEEDED: 1, S.RUNNING: 1, S.READY: 1, S.PENDING: 1, S.UNREADY: 1
    }  # fmt: skip
    assert nonzero(report.job_summary["consolidate_2"]) == {S.UNREADY: 2}
    assert nonzero(report.job_summary["finalJob"]) == {S.UNREADY: 1}  # no row yet
    assert report.total_number_jobs == 8
    assert report.exit_code_summary == {"step_1_isr": [], "consolidate_2": [], "finalJob": []}
    assert report.jobs is None
    assert "PanDA task ids" in str(report.specific_info)
    assert_consistent(report)


def test_succeeded_run(three_label):
    fake, rid, _ = three_label
    fake.finish_all(rid)
    report = report_of(fake, rid, return_exit_codes=True)
    assert report.state is S.SUCCEEDED
    assert report.job_state_counts[S.SUCCEEDED] == 8 == report.total_number_jobs
    assert report.exit_code_summary == {"step_1_isr": [], "consolidate_2": [], "finalJob": []}
    assert len(report.jobs) == 8
    assert {job.state for job in report.jobs} == {S.SUCCEEDED}
    assert_consistent(report)


def test_partly_failed_run_gives_failed_pruned_and_int_exit_codes(three_label):
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 2, CS.FinalFailed: 1}, exit_code="137")
    fake.set_jobs(rid, "wf_01_step_1_isr_02", {CS.Available: 1, CS.FinalFailed: 1}, exit_code=1)
    fake.set_jobs(rid, "wf_02_consolidate_2_01", {CS.Available: 1, CS.Missing: 1})
    fake.release(rid, "wf_03_finalJob_01")
    fake.set_jobs(rid, "wf_03_finalJob_01", {CS.Available: 1})
    report = report_of(fake, rid, return_exit_codes=True)
    assert report.state is S.FAILED  # SubFinished
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 3, S.FAILED: 2}
    assert nonzero(report.job_summary["consolidate_2"]) == {S.SUCCEEDED: 1, S.PRUNED: 1}
    assert sorted(report.exit_code_summary["step_1_isr"]) == [1, 137]
    assert all(type(c) is int for c in report.exit_code_summary["step_1_isr"])
    assert report.exit_code_summary["consolidate_2"] == []
    failed = [job for job in report.jobs if job.state is S.FAILED]
    assert len(failed) == 2
    assert {job.label for job in failed} == {"step_1_isr"}
    assert all(job.attempts == 1 and job.exit_code in (1, 137) for job in failed)
    assert failed[0].name.startswith("wf_01_step_1_isr_0") and "+" not in failed[0].name
    assert_consistent(report)


def test_partly_failed_run_without_exit_codes_fetches_only_the_failing_task(three_label):
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.FinalFailed: 3})
    fake.set_jobs(rid, "wf_01_step_1_isr_02", {CS.Available: 2})
    report = report_of(fake, rid)
    assert "step_1_isr" not in report.exit_code_summary
    assert report.exit_code_summary["consolidate_2"] == []
    fetched = [c for c in fake.calls if c[0] == "get_contents_output_ext"]
    failing = fake.task(rid, "wf_01_step_1_isr_01").workload_id
    assert [c[1] for c in fetched] == [(rid, failing)]
    # The summary of runs (no id) fetches no job at all.
    fake.calls.clear()
    build_run_reports(fake, None, None, 2, False)
    assert not [c for c in fake.calls if c[0] == "get_contents_output_ext"]


def test_report_names_failed_jobs_with_panda_ids_and_monitor_pages(three_label, monkeypatch):
    from lsst.ctrl.bps.report import display_report

    monkeypatch.setenv("PANDAMON_URL", "https://pandamon.example.org/")
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 1, CS.FinalFailed: 2}, exit_code=1)
    contents = fake.get_contents_output_ext(rid, fake.task(rid, "wf_01_step_1_isr_01").workload_id)
    failed = {
        row["name"].split("+", 1)[0]: row["panda_id"]
        for rows in contents.values()
        for row in rows
        if row["status"]["attributes"]["_name_"] == "FinalFailed"
    }
    assert len(failed) == 2
    for return_exit_codes in (False, True):
        out = io.StringIO()
        display_report([report_of(fake, rid, return_exit_codes)], [], is_detailed=True, file=out)
        lines = [line for line in out.getvalue().splitlines() if line.startswith("Failed job ")]
        assert lines == [
            f"Failed job {name} (step_1_isr): PanDA job id {panda_id}, exit code 1; "
            f"monitor https://pandamon.example.org/job?pandaid={panda_id}"
            for name, panda_id in failed.items()
        ]


def test_report_of_a_run_without_failures_names_no_job(three_label, monkeypatch):
    monkeypatch.setenv("PANDAMON_URL", "https://pandamon.example.org")
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 3})
    assert "Failed job" not in str(report_of(fake, rid).specific_info)
    assert not [c for c in fake.calls if c[0] == "get_contents_output_ext"]


def test_cancelled_run_is_deleted(three_label):
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 1, CS.Processing: 1})
    fake.abort(rid)
    report = report_of(fake, rid)
    assert report.state is S.DELETED
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 1, S.DELETED: 4}
    assert nonzero(report.job_summary["finalJob"]) == {S.DELETED: 1}
    assert_consistent(report)


def test_suspended_run_is_held(three_label):
    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.Available: 1, CS.Processing: 1})
    fake.force_status(rid, RequestStatus.Suspended)
    report = report_of(fake, rid)
    assert report.state is S.HELD
    assert nonzero(report.job_summary["step_1_isr"]) == {S.SUCCEEDED: 1, S.HELD: 4}
    assert_consistent(report)


def test_restarted_run_is_running_again(three_label):
    fake, rid, _ = three_label
    for task in ("wf_01_step_1_isr_01", "wf_01_step_1_isr_02", "wf_02_consolidate_2_01"):
        fake.set_jobs(rid, task, {CS.FinalFailed: 1})
    fake.force_status(rid, RequestStatus.SubFinished)
    assert report_of(fake, rid).state is S.FAILED
    fake.retry(rid)
    report = report_of(fake, rid)
    assert report.state is S.RUNNING
    assert report.job_state_counts[S.FAILED] == 0
    assert report.job_state_counts[S.UNREADY] == 8
    assert_consistent(report)


def test_without_jedi_ids_contents_are_fetched_once(tmp_path):
    fake = FakeIDDSServer(jedi=False)
    rid = fake.add_run("wf", {"wf_01_a_01": 2, "wf_02_b_01": 1})
    make_record(tmp_path, "wf", {"wf_01_a_01": ("a", 2), "wf_02_b_01": ("b", 1)}, run_id=rid)
    fake.calls.clear()
    report = report_of(fake, rid, return_exit_codes=True)
    assert [c for c in fake.calls if c[0] == "get_contents_output_ext"] == [
        ("get_contents_output_ext", (rid, None))
    ]
    assert sorted((job.label, job.task_id) for job in report.jobs) == [("a", None), ("a", None), ("b", None)]
    # No PanDA task yet: counters are 0, the record gives the totals.
    assert nonzero(report.job_summary["a"]) == {S.UNREADY: 2}
    assert str(report.specific_info) == "PanDA task ids: none yet"


@pytest.mark.parametrize(
    ("content_name", "job_name"),
    [
        ("isr_903342_10+qgraphNodeId:a1b2+qgraphId:17", "isr_903342_10"),
        ("PH:isr_903342_10", "isr_903342_10"),
        ("isr:orderIdMap_12", "isr:orderIdMap_12"),
        ("pure_pseudoinput+qgraphNodeId:+qgraphId:", "pure_pseudoinput"),
    ],
)
def test_job_names_come_from_the_dependency_map_names(content_name, job_name):
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_a_01": 1})
    fake.task(rid, "wf_01_a_01").jobs[0].name = content_name
    fake.set_jobs(rid, "wf_01_a_01", {CS.FinalFailed: 1}, exit_code="-9")
    (job,) = report_of(fake, rid, return_exit_codes=True).jobs
    assert (job.name, job.label, job.state, job.exit_code, job.attempts) == (job_name, "a", S.FAILED, -9, 1)
    assert job.wms_id == "1000" and job.task_id == 5001


def test_failed_job_without_exit_code_gets_minus_one():
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_a_01": 2})
    fake.set_jobs(rid, "wf_01_a_01", {CS.FinalFailed: 2}, exit_code="0")
    assert report_of(fake, rid, return_exit_codes=True).exit_code_summary == {"a": [-1, -1]}


def test_young_request_with_null_request_id(three_label):
    fake, _, _ = three_label
    rid = fake.add_run("young", {"young_01_a_01": 4}, young=True)
    report = report_of(fake, rid)
    assert report.wms_id == str(rid)
    assert report.run == "young"
    assert report.total_number_jobs == 0  # no record: nothing known yet
    assert report.job_summary == {}
    assert str(report.specific_info) == "PanDA task ids: none yet"


def test_failed_run_prunes_tasks_never_released(tmp_path):
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_a_01": 1, "wf_02_finalJob_01": 1}, gated=["wf_02_finalJob_01"])
    make_record(tmp_path, "wf", {"wf_01_a_01": ("a", 1), "wf_02_finalJob_01": ("finalJob", 1)}, run_id=rid)
    fake.set_jobs(rid, "wf_01_a_01", {CS.FinalFailed: 1})
    fake.force_status(rid, RequestStatus.Failed)
    report = report_of(fake, rid)
    assert nonzero(report.job_summary["finalJob"]) == {S.PRUNED: 1}


def test_without_record_labels_come_from_task_names_and_keep_digits():
    fake = FakeIDDSServer()
    rid = fake.add_run(
        "wf", {"wf_01_step_1_isr_01": 2, "wf_01_step_1_isr_02": 1, "wf_02_consolidate_2_01": 1}
    )
    report = report_of(fake, rid)
    assert report.run_summary == "step_1_isr:3;consolidate_2:1"
    assert report.path is None
    assert_consistent(report)


@pytest.mark.parametrize(
    ("task", "run", "label"),
    [
        ("wf_01_step_1_isr_01", "wf", "step_1_isr"),
        ("wf_02_consolidate_2_03", "wf", "consolidate_2"),
        ("u_jdoe_run_2_20261122T1109Z_01_isr_01", "u_jdoe_run_2_20261122T1109Z", "isr"),
        ("wf_01_step_1_isr_01", None, "step_1_isr"),
        ("build_task", None, "build_task"),
    ],
)
def test_label_from_task_name(task, run, label):
    assert label_from_task_name(task, run) == label


def test_jedi_task_id_suffix_is_matched_to_the_record(tmp_path):
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_a_01": 2})
    fake.task(rid, "wf_01_a_01").name = f"wf_01_a_01_{rid}_1"
    make_record(tmp_path, "wf", {"wf_01_a_01": ("a", 2)}, run_id=rid)
    assert report_of(fake, rid).run_summary == "a:2"


def test_local_service_rows_say_where_logs_are(tmp_path):
    fake = FakeIDDSServer()
    rid = fake.add_run("wf", {"wf_01_a_01": 1})
    fake.row_edits.append(
        lambda row: row.update(locking_thread_name="panda-local", additional_data_storage=str(tmp_path))
    )
    info = report_of(fake, rid).specific_info
    assert info.context["job_logs"] == str(tmp_path / "jobs" / str(rid))
    assert info.context["panda_task_ids"] == "wf_01_a_01=5001"


# ------------------------------------------------------------- properties
_counter = st.one_of(st.none(), st.integers(-5, 60), st.sampled_from(["3", "x", 2.5, True]))
# every output bucket of doc/wire-protocol.md §10
_KEYS = [
    "output_processed_files",
    "output_failed_files",
    "output_missing_files",
    "output_processing_files",
    "output_activated_files",
    "output_preprocessing_files",
    "output_new_files",
]
_READ_AS: dict[object, int] = {None: 0, "3": 3, "x": 0, 2.5: 2, True: 0}
"""What each non-integer counter of `_counter` counts for (garbage is 0)."""


def _as_count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return _READ_AS[value]


@settings(max_examples=300, deadline=None)
@given(
    counters=st.fixed_dictionaries(
        dict.fromkeys([*_KEYS, "input_new_files", "output_total_files"], _counter)
    ),
    expected=st.one_of(st.none(), st.integers(0, 80)),
    transform=st.sampled_from(
        ["Transforming", "Finished", "SubFinished", "Failed", "Cancelled", "Suspended", "Bogus"]
    ),
    run_state=st.sampled_from(list(WmsStates)),
    released=st.booleans(),
)
def test_counts_are_never_negative_and_add_up(counters, expected, transform, run_state, released):
    row = dict(DETAIL_TEMPLATE, **counters)
    row["transform_status"] = {"attributes": {"_name_": transform}}
    counts = task_counts(row if released else None, expected, run_state)
    assert set(counts) == set(WmsStates)
    assert all(isinstance(n, int) and n >= 0 for n in counts.values())
    if expected is not None:
        assert sum(counts.values()) == expected
    elif released:
        numbers = [_as_count(counters[key]) for key in [*_KEYS, "output_total_files"]]
        assert sum(counts.values()) == max(numbers[-1], sum(numbers[:-1]))
    else:
        assert sum(counts.values()) == 0


def test_new_outputs_with_released_inputs_are_ready():
    row = dict(
        DETAIL_TEMPLATE,
        output_total_files=10,
        output_new_files=6,
        input_new_files=2,
        output_processed_files=4,
    )
    row["transform_status"] = {"attributes": {"_name_": "Transforming"}}
    assert nonzero(task_counts(row, 10, S.RUNNING)) == {S.SUCCEEDED: 4, S.READY: 4, S.UNREADY: 2}
    row["input_new_files"] = None  # not synchronised: nothing known to be released
    assert nonzero(task_counts(row, 10, S.RUNNING)) == {S.SUCCEEDED: 4, S.UNREADY: 6}
    row["input_new_files"] = 9  # inconsistent: more new inputs than outputs
    assert nonzero(task_counts(row, 10, S.RUNNING)) == {S.SUCCEEDED: 4, S.UNREADY: 6}


def test_stale_counters_of_a_finished_task_count_as_succeeded():
    row = dict(DETAIL_TEMPLATE, output_processed_files=3, output_failed_files=None)
    row["transform_status"] = {"attributes": {"_name_": "Finished"}}
    assert nonzero(task_counts(row, 5, S.SUCCEEDED)) == {S.SUCCEEDED: 5}
    row["transform_status"] = {"attributes": {"_name_": "Failed"}}
    assert nonzero(task_counts(row, 5, S.FAILED)) == {S.SUCCEEDED: 3, S.PRUNED: 2}


# -------------------------------------------------------------- ids/errors
def test_report_by_submit_dir(three_label):
    fake, rid, submit = three_label
    report = report_of(fake, submit)
    assert report.wms_id == str(rid)
    assert report.path == str(submit)


def test_report_by_request_id_finds_the_record_through_the_index(three_label):
    fake, rid, submit = three_label
    assert report_of(fake, rid).path == str(submit)


def test_record_of_another_service_is_not_used(three_label, monkeypatch):
    fake, rid, _ = three_label
    monkeypatch.setenv("PANDA_URL_SSL", "https://elsewhere.test/server/panda")
    report = report_of(fake, rid)
    assert report.path is None
    assert report.run_summary == "step_1_isr:5;consolidate_2:2"  # final job unknown without record


@pytest.mark.parametrize("bad", ["999", "/no/such/dir", "not-an-id"])
def test_unknown_ids_give_a_message_naming_them(bad):
    reports, message = build_run_reports(FakeIDDSServer(), bad, None, 2, False)
    assert reports == []
    assert bad in message


def test_directory_without_record_and_unsubmitted_run(tmp_path):
    reports, message = build_run_reports(FakeIDDSServer(), str(tmp_path), None, 2, False)
    assert reports == [] and str(tmp_path) in message and "not a PanDA submit directory" in message
    submit = make_record(tmp_path, "prepared", {"prepared_01_a_01": ("a", 1)})
    reports, message = build_run_reports(FakeIDDSServer(), str(submit), None, 2, False)
    assert reports == [] and "has not been submitted" in message


ENVELOPE_ERRORS = [
    IDDSRequestError("get_requests", 1, "User Test User is not allowed"),
    IDDSRequestError("get_requests", 1, "failed to execute command with No section: 'rest'"),
    IDDSRequestError("get_requests", 1, "SSL secure connection is required"),
    PanDAUnreachableError("get_requests", 1, "[Errno 111] Connection refused"),
    PanDAUnreachableError("get_requests", 1, "HTTP 500: Not a gzipped file"),
]


@pytest.mark.parametrize("error", ENVELOPE_ERRORS, ids=str)
def test_envelope_errors_give_clean_messages(three_label, error):
    fake, rid, _ = three_label
    fake.fail_next("get_requests", error)
    reports, message = build_run_reports(fake, str(rid), None, 2, False)
    assert reports == []
    assert str(rid) in message and error.detail in message


def test_contents_error_is_reported(three_label):
    fake, rid, _ = three_label
    fake.fail_next(
        "get_contents_output_ext", PanDAUnreachableError("get_contents_output_ext", rid, "timed out")
    )
    reports, message = build_run_reports(fake, str(rid), None, 2, True)
    assert reports == [] and "timed out" in message


# -------------------------------------------------------------- summaries
def test_summary_without_id_lists_active_and_recent_runs_of_the_user(tmp_path):
    fake = FakeIDDSServer(username="jdoe")
    active = fake.add_run("active", {"active_01_a_01": 2}, age_days=10)
    recent = fake.add_run("recent", {"recent_01_a_01": 1})
    fake.finish_all(recent)
    old = fake.add_run("old", {"old_01_a_01": 1})
    fake.finish_all(old)
    fake.requests[old].updated_at -= datetime.timedelta(days=5)
    other = fake.add_run("other", {"other_01_a_01": 1}, username="someone")

    def ids(user, hist):
        reports, message = build_run_reports(fake, None, user, hist, False)
        assert message == ""
        return sorted(int(r.wms_id) for r in reports)

    assert ids("jdoe", 0) == [active]
    assert ids("jdoe", 2) == [active, recent]
    assert ids("JDoe", 30) == [active, recent, old]
    assert ids(None, 30) == [active, recent, old, other]
    reports, _ = build_run_reports(fake, None, "jdoe", 2, False)
    assert all(r.total_number_jobs is not None and r.job_state_counts for r in reports)


def test_user_filter_matches_the_operator_column(tmp_path):
    """``bps report --user X`` lists the runs whose OPERATOR column shows X
    (the submit record's operator), as well as those of iDDS user X."""
    from lsst.ctrl.bps.report import display_report

    fake = FakeIDDSServer(username="token-user")
    rid = fake.add_run("demo_run", {"demo_run_01_a_01": 1})
    make_record(tmp_path, "demo_run", {"demo_run_01_a_01": ("a", 1)}, run_id=rid, operator="demo")
    plain = fake.add_run("plain", {"plain_01_a_01": 1})
    for user, expected in (("demo", [rid]), ("DEMO", [rid]), ("token-user", [rid, plain]), ("x", [])):
        reports, message = build_run_reports(fake, None, user, 30, False)
        assert message == "" and sorted(int(r.wms_id) for r in reports) == expected, user
    reports, _ = build_run_reports(fake, None, "demo", 30, False)
    out = io.StringIO()
    display_report(reports, [], file=out)
    row = next(line for line in out.getvalue().splitlines() if f" {rid} " in line)
    assert " demo " in row


def test_summary_errors(three_label):
    fake, rid, _ = three_label
    fake.fail_next("get_requests", PanDAUnreachableError("get_requests", None, "Connection refused"))
    reports, message = build_run_reports(fake, None, None, 2, False)
    assert reports == [] and "Connection refused" in message
    second = fake.add_run("second", {"second_01_a_01": 1})
    # The listing works, then the detail query of the first run fails.
    real = fake.get_requests

    def flaky(request_id=None, with_detail=False):
        if request_id == rid:
            raise IDDSRequestError("get_requests", request_id, "went away")
        return real(request_id, with_detail)

    fake.get_requests = flaky
    reports, message = build_run_reports(fake, None, None, 2, False)
    assert [r.wms_id for r in reports] == [str(second)]
    assert f"Run {rid}" in message and "went away" in message


def test_reports_print_with_bps_display_report(three_label):
    from lsst.ctrl.bps.report import display_report

    fake, rid, _ = three_label
    fake.set_jobs(rid, "wf_01_step_1_isr_01", {CS.FinalFailed: 1, CS.Available: 2})
    report = report_of(fake, rid, return_exit_codes=True)
    out = io.StringIO()
    display_report([report], [], is_detailed=True, return_exit_codes=True, file=out)
    text = out.getvalue()
    assert "step_1_isr" in text and "consolidate_2" in text and "finalJob" in text
    assert "PanDA task ids" in text
    assert "WARNING" not in text
    summary = io.StringIO()
    display_report([report], [], file=summary)
    assert str(rid) in summary.getvalue() and "RUNNING" in summary.getvalue()
    json.dumps(report.exit_code_summary)  # plain ints
