# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The monitor page: server-side HTML, no JavaScript.

`render_runs` lists the runs; `render_run` shows one run's tasks with job
counts by state and its failed jobs with the last lines of their stderr.
Pages of active runs refresh themselves (``<meta http-equiv="refresh">``).
"""

from __future__ import annotations

__all__ = ["REFRESH_SECONDS", "render_run", "render_runs"]

import html
import time
from collections.abc import Iterable

from .naming import STATE_ORDER
from .overview import JobLine, RunSummary, TaskSummary

REFRESH_SECONDS = 5
"""Refresh interval of pages showing an active run."""

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
td.n { text-align: right; }
.SUCCEEDED { color: #17692c; } .FAILED { color: #b00020; font-weight: bold; }
.RUNNING { color: #0b57a4; } .PRUNED, .DELETED { color: #777; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.5em; overflow-x: auto; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, refresh: bool) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title>{meta}<style>{_STYLE}</style></head>"
        f"<body>{body}<p><small>panda-local monitor, {_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}"
        f"{f'; refreshes every {REFRESH_SECONDS} s' if refresh else ''}</small></p></body></html>\n"
    )


def _elapsed(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _count_cells(counts: dict[str, int]) -> str:
    return "".join(f'<td class="n {name}">{counts.get(name, 0) or ""}</td>' for name in STATE_ORDER)


def _state_headers() -> str:
    return "".join(f"<th>{name}</th>" for name in STATE_ORDER)


def render_runs(runs: Iterable[RunSummary], base: str) -> str:
    """Return the page listing runs.

    Parameters
    ----------
    runs : iterable of `RunSummary`
        Newest first.
    base : `str`
        Path of the monitor (links go to ``<base>/<run id>``).

    Returns
    -------
    page : `str`
        HTML.
    """
    runs = list(runs)
    rows = "".join(
        f'<tr><td><a href="{_esc(base)}/{run.request_id}">{run.request_id}</a></td>'
        f'<td>{_esc(run.name)}</td><td>{_esc(run.user)}</td><td class="run-status">{_esc(run.status)}</td>'
        f'<td class="n">{run.total}</td>{_count_cells(run.counts)}<td>{_elapsed(run.elapsed)}</td></tr>'
        for run in runs
    )
    table = (
        '<table id="runs"><tr><th>run id</th><th>name</th><th>user</th><th>status</th><th>jobs</th>'
        f"{_state_headers()}<th>elapsed</th></tr>{rows}</table>"
        if runs
        else "<p>No runs yet: submit one with <code>bps submit</code>.</p>"
    )
    return _page("panda-local runs", f"<h1>Runs</h1>{table}", any(run.active for run in runs))


def _failed_section(failed: list[tuple[JobLine, str]]) -> str:
    if not failed:
        return "<h2>Failed jobs</h2><p>None.</p>"
    parts = ["<h2>Failed jobs</h2>"]
    for job, tail in failed:
        parts.append(
            f'<div class="failed-job"><h3>{_esc(job.label)}: {_esc(job.job_name)}</h3>'
            f"<p>exit code {_esc(job.exit_code)} after {job.attempts} attempt(s); PanDA id "
            f"{_esc(job.panda_id)}; stderr <code>{_esc(job.stderr)}</code></p>"
            f"<pre>{_esc(tail) or '(empty)'}</pre></div>"
        )
    return "".join(parts)


def render_run(
    run: RunSummary, tasks: Iterable[TaskSummary], failed: list[tuple[JobLine, str]], base: str
) -> str:
    """Return the page of one run.

    Parameters
    ----------
    run : `RunSummary`
        The run.
    tasks : iterable of `TaskSummary`
        Its tasks.
    failed : `list` [`tuple` [`JobLine`, `str`]]
        Its failed jobs, each with the last lines of its stderr.
    base : `str`
        Path of the monitor (for the link back).

    Returns
    -------
    page : `str`
        HTML.
    """
    rows = "".join(
        f"<tr><td>{_esc(task.label)}</td><td>{_esc(task.task_name)}</td>"
        f'<td class="n">{sum(task.counts.values())}</td>{_count_cells(task.counts)}</tr>'
        for task in tasks
    )
    body = (
        f'<p><a href="{_esc(base)}">all runs</a></p>'
        f"<h1>Run {run.request_id}: {_esc(run.name)}</h1>"
        f'<p>status <b id="run-status">{_esc(run.status)}</b>, {run.total} jobs, user {_esc(run.user)}, '
        f"elapsed {_elapsed(run.elapsed)}</p>"
        f'<h2>Tasks</h2><table id="tasks"><tr><th>label</th><th>task</th><th>jobs</th>'
        f"{_state_headers()}</tr>{rows}</table>{_failed_section(failed)}"
    )
    return _page(f"panda-local run {run.request_id}", body, run.active)
