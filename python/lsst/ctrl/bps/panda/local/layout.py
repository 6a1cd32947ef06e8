# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Where the local service keeps things under its state directory."""

from __future__ import annotations

__all__ = ["PAYLOAD_STDERR", "PAYLOAD_STDOUT", "StateLayout", "default_state_dir"]

import os
import zlib
from dataclasses import dataclass

from .naming import bps_job_name, safe_component, task_label

STATE_DIR_VARIABLE = "PANDA_LOCAL_STATE"
"""Environment variable naming the default state directory."""

PAYLOAD_STDOUT = "payload.stdout"
"""File of an attempt's directory holding the payload's standard output."""

PAYLOAD_STDERR = "payload.stderr"
"""File of an attempt's directory holding the payload's standard error."""


def default_state_dir() -> str:
    """Return ``$PANDA_LOCAL_STATE`` or ``~/.lsst/panda-local``.

    Returns
    -------
    path : `str`
        Absolute path of the default state directory.
    """
    value = os.environ.get(STATE_DIR_VARIABLE) or os.path.join("~", ".lsst", "panda-local")
    return os.path.abspath(os.path.expanduser(value))


@dataclass(frozen=True)
class StateLayout:
    """Paths of the files of one service instance.

    Parameters
    ----------
    root : `str`
        The state directory.
    """

    root: str

    @property
    def database(self) -> str:
        """SQLite database."""
        return os.path.join(self.root, "panda_local.sqlite3")

    @property
    def config_root(self) -> str:
        """``PANDA_CONFIG_ROOT`` of clients: holds the ``.token`` file."""
        return os.path.join(self.root, "panda_config")

    @property
    def token_file(self) -> str:
        """OIDC token cache read by panda-client."""
        return os.path.join(self.config_root, ".token")

    @property
    def service_file(self) -> str:
        """JSON written once the server listens: pid, port, url."""
        return os.path.join(self.root, "service.json")

    @property
    def pid_file(self) -> str:
        """Pid of the running service."""
        return os.path.join(self.root, "panda-local.pid")

    @property
    def cache_dir(self) -> str:
        """Files uploaded to the PanDA cache (``putFile``)."""
        return os.path.join(self.root, "cache")

    @property
    def log_file(self) -> str:
        """Log of the daemonised service."""
        return os.path.join(self.root, "panda-local.log")

    def attempt_dir(self, request_id: int, task_name: str, job_name: str, attempt_nr: int) -> str:
        """Return the working directory of one job attempt.

        Parameters
        ----------
        request_id : `int`
            Request id.
        task_name : `str`
            Name of the job's task (``<run>_<NN>_<label>_<NN>``).
        job_name : `str`
            The job's pseudo input name (``<bps job name>+...``).
        attempt_nr : `int`
            Attempt number, from 1.

        Returns
        -------
        path : `str`
            ``<root>/jobs/<request>/<label>/<bps job name>/attempt_<n>``
            (the bps name of a quantum holds its label and data id); it
            holds ``payload.stdout``, ``payload.stderr`` and
            ``payload.exitcode``.
        """
        label = safe_component(task_label(task_name), str(request_id))
        job = safe_component(bps_job_name(job_name), f"{zlib.crc32(job_name.encode()):08x}")
        return os.path.join(self.root, "jobs", str(request_id), label, job, f"attempt_{attempt_nr}")
