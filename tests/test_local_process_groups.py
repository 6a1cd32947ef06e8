# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Each attempt of a job runs in its own process group, killed as a whole.

Payloads put a child in the background that writes a timestamp every 20 ms
into a file of its attempt; the next attempt records when it starts. No
timestamp of an earlier attempt may come after the start of a later one, and
the background writers must be gone once their attempt ended.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_harness import JobDef, LocalService, RelayClient, WorkDef, build_workflow, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayClient]:
    service = LocalService(str(tmp_path_factory.mktemp("panda-local")), workers=2).start()
    try:
        yield service.client()
    finally:
        service.stop()


def _writer(out: Path) -> str:
    """Shell: a background child stamping ``<out>/ticks_<attempt>``."""
    return (
        f"( while :; do date +%s%N >> {out}/ticks_$PanDA_AttemptNr; sleep 0.02; done ) & "
        f"date +%s%N > {out}/start_$PanDA_AttemptNr; echo $$ > {out}/shell_$PanDA_AttemptNr; "
    )


def _ticks(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split() if line.strip()] if path.exists() else []


def _assert_attempts_did_not_overlap(out: Path) -> None:
    start_2 = int((out / "start_2").read_text())
    ticks_1 = _ticks(out / "ticks_1")
    assert ticks_1, "the first attempt's background writer never ran"
    assert max(ticks_1) < start_2, "the first attempt still ran when the second started"
    count = len(_ticks(out / "ticks_1")) + len(_ticks(out / "ticks_2"))
    time.sleep(0.5)
    assert len(_ticks(out / "ticks_1")) + len(_ticks(out / "ticks_2")) == count, "a writer outlived its job"


def test_background_child_of_a_failed_attempt_is_killed_before_the_retry(
    client: RelayClient, tmp_path: Path
) -> None:
    body = _writer(tmp_path) + 'sleep 0.3; [ "$PanDA_AttemptNr" -gt 1 ] || exit 3'
    works = [WorkDef("wf_01_bg", body, (JobDef("bg0"),), max_attempt=2)]
    request_id = client.result("submit", build_workflow("wf_background", works))
    assert client.wait(request_id, timeout=90) == "Finished"
    row = client.jobs(request_id)["bg0"]
    assert (row["status"], row["attempt_nr"]) == ("Available", 2)
    _assert_attempts_did_not_overlap(tmp_path)


def test_killing_the_wrapper_shell_kills_the_payload_before_the_retry(
    client: RelayClient, tmp_path: Path
) -> None:
    body = _writer(tmp_path) + '[ "$PanDA_AttemptNr" -gt 1 ] || sleep 60'
    works = [WorkDef("wf_01_kill", body, (JobDef("k0"),), max_attempt=2)]
    request_id = client.result("submit", build_workflow("wf_killed_shell", works))
    shell = tmp_path / "shell_1"
    wait_for(lambda: shell.exists() and shell.read_text().strip() and len(_ticks(tmp_path / "ticks_1")) > 2)
    os.kill(int(shell.read_text()), signal.SIGKILL)  # the wrapper only: its payload and child live on
    assert client.wait(request_id, timeout=90) == "Finished"
    row = client.jobs(request_id)["k0"]
    assert (row["status"], row["attempt_nr"]) == ("Available", 2)
    _assert_attempts_did_not_overlap(tmp_path)
