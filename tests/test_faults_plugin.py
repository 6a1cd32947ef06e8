# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Plugin faults injected against two real local PanDA services.

Two ``panda-local`` daemons (loopback, free ports, temporary state
directories) stand for two PanDA servers handing out the same request ids.
The plugin is driven through `PanDAService`, as ``bps`` drives it:

* a submit directory of service A used with the environment of service B
  (same request number on both) is refused; B's run is untouched;
* a client SIGKILLed after the server created its request but before it
  recorded the id: report, status and cancel by submit directory find the
  run by its request name; killed before sending: report says so;
* hostile job names, labels and carried values (``$(...)``, ``;``,
  backticks, quotes, newlines) are refused at prepare naming the job, and
  nothing reaches the service or runs; a benign job of the same shape runs;
* a relative ``fileDistributionEndPoint`` without a trailing ``/`` runs
  every job once; ``file://dist`` is refused naming the key.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_harness import LocalService
from run_helpers import prepare, shell_workflow

from lsst.ctrl.bps import WmsStates
from lsst.ctrl.bps.panda import PanDAService
from lsst.ctrl.bps.panda.exceptions import PanDAConfigError, WorkflowTranslationError
from lsst.ctrl.bps.panda.submit_record import SubmitRecord

pytestmark = pytest.mark.timeout(300)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalService, LocalService]]:
    """Two local services, both stopped at the end."""
    first = LocalService(str(tmp_path_factory.mktemp("service-a")), workers=2)
    second = LocalService(str(tmp_path_factory.mktemp("service-b")), workers=2)
    first.start()
    try:
        second.start()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture(autouse=True)
def _run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTRL_BPS_PANDA_RUN_INDEX", str(tmp_path / "runs.jsonl"))


def use(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the client environment at one service; return its exports."""
    exports = service.exports
    for key, value in exports.items():
        monkeypatch.setenv(key, value)
    return exports


def request_names(service: LocalService) -> dict[int, str]:
    """Return every request of a service: id to name."""
    rows = service.client().result("get_requests")
    return {int(row["request_id"]): row["name"] for row in rows}


def submit(tmp_path: Path, name: str, command: str) -> tuple[PanDAService, str, int]:
    """Prepare and submit a one-job run; return service, submit dir, id."""
    service, prepared = prepare(tmp_path, shell_workflow(name, {f"{name}_job": command}))
    service.submit(prepared)
    return service, prepared.submit_path, int(prepared.run_id)


def wait_status(service: LocalService, request_id: int, wanted: set[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = service.client().request_status(request_id)
        if status in wanted:
            return status
        time.sleep(0.2)
    raise TimeoutError(f"request {request_id} still {status}")


# ------------------------------------------------------- item 2: wrong relay


def test_submit_dir_refused_against_another_service(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_a, service_b = services
    url_a = use(service_a, monkeypatch)["PANDA_URL_SSL"]
    _, dir_a, id_a = submit(tmp_path, "run_on_a", "sleep 120")
    url_b = use(service_b, monkeypatch)["PANDA_URL_SSL"]
    id_b = 0
    while id_b < id_a:  # B hands out the same number to an unrelated run
        _, _, id_b = submit(tmp_path, f"run_on_b_{id_b + 1}", "sleep 120")
    assert id_b == id_a
    assert SubmitRecord.read(dir_a).relay_url == url_a

    bps = PanDAService({})  # what bps cancel/report/status/restart build
    refused = re.compile(rf"submitted to {re.escape(url_a)}.*now point at {re.escape(url_b)}", re.DOTALL)
    state, message = bps.get_status(dir_a)
    assert state is WmsStates.UNKNOWN and refused.search(message), message
    reports, message = bps.report(dir_a)
    assert reports == [] and refused.search(message), message
    cancelled, message = bps.cancel(dir_a)
    assert not cancelled and refused.search(message), message
    run_id, _, message = bps.restart(dir_a)
    assert run_id is None and refused.search(message or ""), message
    assert bps.list_submitted_jobs(dir_a) == []  # bps cancel --id <dir> cancels nothing
    assert service_b.client().request_status(id_b) == "Transforming", "B's run must be untouched"

    use(service_a, monkeypatch)  # with A's environment the directory works
    assert bps.list_submitted_jobs(dir_a) == [str(id_a)]
    assert bps.cancel(str(id_a))[0]
    assert wait_status(service_a, id_a, {"Cancelled"}) == "Cancelled"
    use(service_b, monkeypatch)
    assert bps.cancel(str(id_b))[0]


def test_reset_service_with_reused_id_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same relay URL, but the service was reset (new state directory on
    the same port) and hands out the recorded id to another run."""
    first = LocalService(str(tmp_path / "state-1"), workers=1)
    with first:
        exports = use(first, monkeypatch)
        _, run_dir, run_id = submit(tmp_path, "run_before_reset", "true")
    port = int(exports["PANDA_URL_SSL"].split(":")[2].split("/")[0])
    second = LocalService(str(tmp_path / "state-2"), workers=1, port=port)
    with second:
        assert use(second, monkeypatch)["PANDA_URL_SSL"] == exports["PANDA_URL_SSL"]
        _, _, other_id = submit(tmp_path, "run_after_reset", "sleep 120")
        assert other_id == run_id
        bps = PanDAService({})
        cancelled, message = bps.cancel(run_dir)
        assert not cancelled and "run_after_reset" in message and "another run" in message, message
        assert bps.list_submitted_jobs(run_dir) == []
        reports, message = bps.report(run_dir)
        assert reports == [] and "another run" in message
        assert second.client().request_status(other_id) == "Transforming"


# ------------------------------------ item 6: client killed mid-submit

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from run_helpers import prepare, shell_workflow
    from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport
    from lsst.ctrl.bps.panda.panda_workflow import PandaBpsWmsWorkflow

    def hold(where):
        def stop(*args, **kwargs):
            print(where, flush=True)
            time.sleep(600)
        return stop

    if sys.argv[4] == "after-send":  # the server answered with the id: stop before recording it
        PandaBpsWmsWorkflow.record_submission = hold("SENT")
    else:  # the intent is recorded: stop before anything is sent
        PanDARelayTransport.submit = hold("INTENT")
    service, prepared = prepare(Path(sys.argv[2]), shell_workflow(sys.argv[3], {"job_1": "sleep 120"}))
    service.submit(prepared)
    """
)


def _killed_client(tmp_path: Path, name: str, when: str) -> Path:
    """Run prepare + submit in a child process; SIGKILL it at ``when``."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(TESTS), str(tmp_path), name, when],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        marker = {"after-send": "SENT", "before-send": "INTENT"}[when]
        lines = []
        for line in child.stdout:  # the child also logs to stdout
            lines.append(line)
            if line.strip() == marker:
                break
        else:
            raise AssertionError(f"the child ended before {marker}: {''.join(lines)}")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    return tmp_path / "submit" / name


def test_client_killed_after_send_run_found_by_name(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_a, _ = services
    use(service_a, monkeypatch)
    run_dir = _killed_client(tmp_path, "run_orphan_1", "after-send")
    (request_id,) = [rid for rid, name in request_names(service_a).items() if name == "run_orphan_1"]
    record = SubmitRecord.read(run_dir)
    assert record.run_id is None and record.submit_started and record.relay_url

    bps = PanDAService({})
    reports, message = bps.report(str(run_dir))
    assert message == "" and [r.wms_id for r in reports] == [str(request_id)]
    assert reports[0].run == "run_orphan_1" and reports[0].total_number_jobs == 1
    assert SubmitRecord.read(run_dir).run_id == request_id, "the record is completed"
    assert bps.get_status(str(run_dir))[0] in (WmsStates.RUNNING, WmsStates.PENDING, WmsStates.READY)
    assert bps.list_submitted_jobs(str(run_dir)) == [str(request_id)]
    assert bps.cancel(str(run_dir))[0]
    assert wait_status(service_a, request_id, {"Cancelled"}) == "Cancelled"


def test_client_killed_after_send_cancel_first(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bps cancel --id <dir>`` as the first command after the kill."""
    service_a, _ = services
    use(service_a, monkeypatch)
    run_dir = _killed_client(tmp_path, "run_orphan_2", "after-send")
    (request_id,) = [rid for rid, name in request_names(service_a).items() if name == "run_orphan_2"]
    bps = PanDAService({})
    assert bps.list_submitted_jobs(str(run_dir)) == [str(request_id)]
    cancelled, message = bps.cancel(str(request_id))
    assert cancelled, message
    assert wait_status(service_a, request_id, {"Cancelled"}) == "Cancelled"


def test_client_killed_before_send_says_so(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_a, _ = services
    use(service_a, monkeypatch)
    before = request_names(service_a)
    run_dir = _killed_client(tmp_path, "run_never_sent", "before-send")
    assert request_names(service_a) == before
    reports, message = PanDAService({}).report(str(run_dir))
    assert reports == [] and "never reached the service" in message and "run_never_sent" in message


# -------------------------------------- item 3: hostile names, labels


def _hostile(marker: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(job name, label, cmdvals) triples, each trying to touch ``marker``."""
    touch = f"touch${{IFS}}{marker}"
    return [
        (f"job_$({touch})", "work", {}),
        (f"job;{touch}", "work", {}),
        (f"job`{touch}`", "work", {}),
        (f"job'$({touch})'", "work", {}),
        (f'job"$({touch})"', "work", {}),
        (f"job|{touch}", "work", {}),
        (f"job&&{touch}", "work", {}),
        (f"job\n{touch}", "work", {}),
        ("job_label", f"work;{touch}", {}),
        ("job_label", f"$({touch})", {}),
        ("job_label", f"work`{touch}`", {}),
        ("job_value", "work", {"qgraphNodeId": f"n;{touch}"}),
        ("job_value", "work", {"qgraphNodeId": f"n$({touch})"}),
    ]


def test_hostile_names_refused_nothing_runs(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_a, _ = services
    use(service_a, monkeypatch)
    marker = tmp_path / "pwned"
    before = request_names(service_a)
    for number, (job, label, cmdvals) in enumerate(_hostile(marker)):
        workflow = shell_workflow(f"run_hostile_{number}", {job: "true"}, label, cmdvals)
        with pytest.raises(WorkflowTranslationError) as caught:
            prepare(tmp_path, workflow)
        assert repr(job) in str(caught.value), caught.value
        assert "shell" in str(caught.value)
    assert request_names(service_a) == before, "nothing may reach the service"
    # The same shape with a benign name runs: a hostile name that got
    # through would have run just like this command.
    _, _, request_id = submit(tmp_path, "run_benign", f"touch {tmp_path}/benign")
    assert wait_status(service_a, request_id, {"Finished", "Failed"}) == "Finished"
    assert (tmp_path / "benign").exists()
    # An injected touch creates pwned (or pwned+<rest of the pseudo name>).
    assert not list(tmp_path.glob("pwned*"))


# -------------------------------- item 7: distribution endpoint forms


def test_relative_endpoint_without_slash_runs_every_job_once(
    services: tuple[LocalService, LocalService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_a, _ = services
    use(service_a, monkeypatch)
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "input.txt"
    source.write_text("staged\n")
    commands = {f"rel_{n}": f"cat <FILE:inp> > {tmp_path}/out_{n}" for n in range(3)}
    workflow = shell_workflow("run_relative", commands, inputs={"inp": str(source)})
    service, prepared = prepare(tmp_path, workflow, fileDistributionEndPoint="dist_rel/{uniqProcName}")
    assert prepared.distribution_endpoint == f"file://{tmp_path}/dist_rel/run_relative/"
    service.submit(prepared)
    request_id = int(prepared.run_id)
    assert wait_status(service_a, request_id, {"Finished", "Failed", "SubFinished"}) == "Finished"
    jobs = service_a.client().jobs(request_id)
    assert sorted(row["attempt_nr"] for row in jobs.values()) == [1, 1, 1], jobs
    assert all((tmp_path / f"out_{n}").read_text() == "staged\n" for n in range(3))


@pytest.mark.parametrize("endpoint", ["file://dist", "file:dist", "s3:bucket", "dist/$(id)"])
def test_bad_endpoint_refused_naming_the_key(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(PanDAConfigError, match="fileDistributionEndPoint"):
        prepare(
            tmp_path, shell_workflow("run_bad_endpoint", {"job": "true"}), fileDistributionEndPoint=endpoint
        )
