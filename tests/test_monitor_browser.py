# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The monitor page in a real headless browser (Debian's chromium).

A local service runs a workflow whose quantum fails; chromium opens the URL
``panda-local monitor`` prints (token in the URL, then a cookie after the
redirect) and the test reads the DOM chromium rendered: the runs, the
run's tasks with counts by state, the failed job with the end of its stderr,
and a refresh only while a run is active. ``scripts/browser-prereqs.sh``
(run by ``scripts/test.sh``) installs chromium; without it the test is
skipped, unless ``PANDA_BROWSER_REQUIRED=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from local_harness import JobDef, LocalService, RelayClient, WorkDef, build_workflow

pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/bin/chromium"
PANDA_LOCAL = str(Path(sys.executable).parent / "panda-local")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

if not os.access(CHROMIUM, os.X_OK):
    if os.environ.get("PANDA_BROWSER_REQUIRED") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/browser-prereqs.sh")
    pytest.skip(f"{CHROMIUM} is missing (scripts/browser-prereqs.sh installs it)", allow_module_level=True)


class _Text(HTMLParser):
    """Visible text of a DOM, by element id / class, plus meta refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.refresh = False
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "refresh":
            self.refresh = True
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.chunks).split())


def _browse(url: str) -> _Text:
    """Render a URL in a fresh headless chromium and parse its DOM."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    parsed = _Text()
    parsed.feed(proc.stdout)
    return parsed


@pytest.fixture(scope="module")
def monitor_url(service: LocalService) -> str:
    proc = subprocess.run(
        [PANDA_LOCAL, "monitor", "--state-dir", service.layout.root],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _job(uuid: str, label: str, detector: int) -> str:
    return f"{uuid}_{label}_{detector}+qgraphNodeId:{uuid}+qgraphId:"


@pytest.fixture(scope="module")
def failed_run(service: LocalService) -> int:
    client: RelayClient = service.client()
    calibrate = (
        'case "${IN/L}" in *_calib_1+*) for i in 1 2 3; do echo "noise $i" >&2; done; '
        'echo "ValueError: detector 1 has no flat <field>" >&2; exit 1;; esac'
    )
    jobs = tuple(JobDef(_job(f"q{d}", "calib", d)) for d in range(3))
    children = tuple(
        JobDef(_job(f"r{d}", "measure", d), (("m_01_calib_01", _job(f"q{d}", "calib", d)),)) for d in range(3)
    )
    works = [
        WorkDef("m_01_calib_01", calibrate, jobs, max_attempt=3, retry_unless_exit=(1, 2)),
        WorkDef("m_02_measure_01", "true", children),
    ]
    request_id = client.result("submit", build_workflow("m", works))
    assert client.wait(request_id, timeout=120) == "SubFinished"
    return request_id


def test_run_page_of_a_finished_failing_run(monitor_url: str, failed_run: int) -> None:
    base, query = monitor_url.split("?", 1)
    page = _browse(f"{base}/{failed_run}?{query}")
    text = page.text
    assert f"Run {failed_run}: m" in text
    assert "status SubFinished, 6 jobs" in text, text
    header = next(row for row in page.rows if row[:3] == ["label", "task", "jobs"])
    by_label = {
        row[0]: dict(zip(header, row, strict=True)) for row in page.rows if row[0] in ("calib", "measure")
    }
    assert (by_label["calib"]["jobs"], by_label["calib"]["SUCCEEDED"], by_label["calib"]["FAILED"]) == (
        "3",
        "2",
        "1",
    )
    assert (by_label["measure"]["SUCCEEDED"], by_label["measure"]["PRUNED"]) == ("2", "1")
    # The failed job, with the last lines of its stderr (escaped, not markup).
    assert "Failed jobs" in text and "calib: q1_calib_1" in text
    assert "exit code 1 after 1 attempt(s)" in text
    assert "ValueError: detector 1 has no flat <field>" in text
    assert re.search(r"stderr \S+/jobs/\d+/calib/q1_calib_1/attempt_1/payload\.stderr", text), text
    assert not page.refresh  # finished: no refresh


def test_runs_page_lists_runs_and_refreshes_while_one_is_active(
    service: LocalService, monitor_url: str, failed_run: int, tmp_path: Path
) -> None:
    client = service.client()
    go = tmp_path / "go"
    active = client.result(
        "submit",
        build_workflow(
            "busy", [WorkDef("b_01_wait_01", f"while [ ! -e {go} ]; do sleep 0.1; done", (JobDef("w"),))]
        ),
    )
    try:
        page = _browse(monitor_url)
    finally:
        go.touch()
    rows = {row[0]: row for row in page.rows if row and row[0].isdigit()}
    assert rows[str(failed_run)][1:4] == ["m", rows[str(failed_run)][2], "SubFinished"]
    assert rows[str(active)][3] == "Transforming"
    assert page.refresh  # an active run: the page refreshes itself
    client.wait(active)
    assert not _browse(monitor_url).refresh


def test_page_without_the_token_is_refused(monitor_url: str) -> None:
    page = _browse(monitor_url.split("?", 1)[0])
    assert "Token authentication failed" in page.text
    assert "Runs" not in page.text
