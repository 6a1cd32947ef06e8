# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The submit record: what a run's reports need to know from submit time.

``prepare`` writes ``panda_submit_record.json`` into the submit directory:
the run name, the iDDS request name, and for every iDDS task its BPS label
and job count.  ``submit`` first records its intent (the relay URL it sends
to and the time), then sends, then adds the request id and appends a line
to a per-user run index, so that a report by request id finds the submit
directory (and so the labels) again.  A client killed between sending and
recording the id leaves the intent, from which the run is found again by
its (unique) request name (`run_lookup`).
"""

from __future__ import annotations

__all__ = ["SubmitRecord", "TaskRecord", "current_relay_url", "find_submit_dir", "run_index_path"]

import dataclasses
import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any

from .constants import SUBMIT_RECORD_FILENAME
from .exceptions import PanDABpsError

_LOG = logging.getLogger(__name__)

RUN_INDEX_ENV = "CTRL_BPS_PANDA_RUN_INDEX"
"""Environment variable naming the run index file (one JSON line per run)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord:
    """One iDDS task (a chunk of one label, or the final job).

    Parameters
    ----------
    label : `str`
        The BPS label of the task's jobs.
    jobs : `int`
        Number of jobs in the task.
    """

    label: str
    jobs: int


@dataclasses.dataclass(slots=True)
class SubmitRecord:
    """Run-level facts written at prepare and completed at submit.

    Parameters
    ----------
    run_name : `str`
        The iDDS request name (the BPS ``uniqProcName``).
    submit_path : `str`
        Absolute submit directory.
    tasks : `dict` [`str`, `TaskRecord`]
        Task name to label and job count, in submission order.
    run_id : `int` or `None`
        The iDDS request id once submitted.
    extra : `dict` [`str`, `~typing.Any`]
        Other run attributes worth reporting (operator, project, campaign,
        payload, site, distribution endpoint, service URL).
    request_name : `str` or `None`
        The name of the iDDS request (the iDDS workflow name); `None` in
        records written before it was kept.
    relay_url : `str` or `None`
        The PanDA relay the run was sent to (``PANDA_URL_SSL`` at submit);
        `None` until submit starts.
    submit_started : `str` or `None`
        When submit started sending (ISO 8601, UTC); `None` before.
    """

    run_name: str
    submit_path: str
    tasks: dict[str, TaskRecord]
    run_id: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    request_name: str | None = None
    relay_url: str | None = None
    submit_started: str | None = None

    @property
    def name_on_server(self) -> str:
        """The request name the server knows the run by (`str`)."""
        return self.request_name or self.run_name

    def record_intent(self) -> None:
        """Record, before sending, that the run is being submitted and where.

        Writes the relay URL (``PANDA_URL_SSL``, else ``PANDA_URL``) and the
        current time into the record, so that a client killed before it
        records the request id leaves enough to find the run by name.
        """
        self.relay_url = current_relay_url()
        self.submit_started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.write()

    def write(self) -> Path:
        """Write the record into its submit directory.

        Returns
        -------
        path : `pathlib.Path`
            The file written.
        """
        path = Path(self.submit_path) / SUBMIT_RECORD_FILENAME
        data = dataclasses.asdict(self)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, submit_dir: str | os.PathLike[str]) -> SubmitRecord:
        """Read the record of a submit directory.

        Parameters
        ----------
        submit_dir : `str` or `os.PathLike`
            The run's submit directory.

        Returns
        -------
        record : `SubmitRecord`
            The record.

        Raises
        ------
        PanDABpsError
            If the directory holds no readable record.
        """
        path = Path(submit_dir) / SUBMIT_RECORD_FILENAME
        try:
            data = json.loads(path.read_text())
            tasks = {name: TaskRecord(**task) for name, task in data.pop("tasks").items()}
            return cls(tasks=tasks, **data)
        except FileNotFoundError as exc:
            raise PanDABpsError(f"'{submit_dir}' is not a PanDA submit directory (no {path.name})") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise PanDABpsError(f"Submit record {path} is unreadable: {exc}") from exc

    def register(self) -> None:
        """Append this submitted run to the run index (best effort)."""
        if self.run_id is None:
            return
        index = run_index_path()
        entry = {
            "run_id": self.run_id,
            "submit_path": self.submit_path,
            "run_name": self.run_name,
            "service": current_relay_url(),
        }
        line = json.dumps(entry)
        try:
            index.parent.mkdir(parents=True, exist_ok=True)
            with index.open("a") as stream:
                stream.write(line + "\n")
        except OSError as exc:
            _LOG.warning("Could not record run %s in the run index %s: %s", self.run_id, index, exc)


def run_index_path() -> Path:
    """Return the path of the per-user run index.

    Returns
    -------
    path : `pathlib.Path`
        ``$CTRL_BPS_PANDA_RUN_INDEX`` or
        ``~/.lsst/ctrl_bps_panda/runs.jsonl``.
    """
    configured = os.environ.get(RUN_INDEX_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".lsst" / "ctrl_bps_panda" / "runs.jsonl"


def find_submit_dir(run_id: int) -> Path | None:
    """Find the submit directory of a request id in the run index.

    Only entries recorded against the current ``PANDA_URL_SSL`` match, as
    request ids are per server.

    Parameters
    ----------
    run_id : `int`
        The iDDS request id.

    Returns
    -------
    submit_dir : `pathlib.Path` or `None`
        The newest existing submit directory recorded for that id, or `None`.
    """
    index = run_index_path()
    try:
        lines = index.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("run_id") != run_id or entry.get("service") != current_relay_url():
            continue
        if (Path(entry["submit_path"]) / SUBMIT_RECORD_FILENAME).exists():
            return Path(entry["submit_path"])
    return None


def current_relay_url() -> str | None:
    """Return the relay URL runs are sent to now, to tell servers apart.

    Returns
    -------
    url : `str` or `None`
        ``$PANDA_URL_SSL``, else ``$PANDA_URL``, else `None`.
    """
    return os.environ.get("PANDA_URL_SSL") or os.environ.get("PANDA_URL")
