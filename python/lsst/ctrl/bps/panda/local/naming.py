# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Names a person recognises, read from the names the plugin sends.

The plugin names each task ``<run>_<NN>_<label>_<NN>`` and gives each job a
pseudo input name ``<bps job name>+qgraphNodeId:<uuid>+qgraphId:...``; the
bps job name of a quantum is ``<uuid>_<label>_<data id values>``. These
helpers recover the label and the bps job name and make directory names
from them. Names of other clients fall back to the whole name.
"""

from __future__ import annotations

__all__ = ["STATE_ORDER", "bps_job_name", "safe_component", "task_label"]

import re

STATE_ORDER = ("SUCCEEDED", "FAILED", "RUNNING", "READY", "UNREADY", "PRUNED", "DELETED")
"""Job state names as ``bps report`` prints them, in display order."""

_TASK_NAME = re.compile(r"^(?P<run>.+?)_\d{2,}_(?P<label>.+)_\d{2,}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")
_MAX_COMPONENT = 200


def task_label(task_name: str) -> str:
    """Return the pipeline label of a task named by the plugin.

    Parameters
    ----------
    task_name : `str`
        ``<run>_<NN>_<label>_<NN>`` (e.g. ``u_demo_..._02_add1_01``).

    Returns
    -------
    label : `str`
        ``add1``; the whole name when it does not have that form.
    """
    match = _TASK_NAME.match(task_name)
    return match.group("label") if match else task_name


def bps_job_name(pseudo_name: str) -> str:
    """Return the bps job name carried by a job's pseudo input name.

    Parameters
    ----------
    pseudo_name : `str`
        ``<bps job name>+qgraphNodeId:<uuid>+qgraphId:``.

    Returns
    -------
    name : `str`
        The part before the first ``+`` (the whole name without one).
    """
    return pseudo_name.split("+", 1)[0] or pseudo_name


def safe_component(name: str, unique_suffix: str) -> str:
    """Return a name usable as one path component.

    Parameters
    ----------
    name : `str`
        Any name.
    unique_suffix : `str`
        Appended (after ``-``) when the name had to be shortened, so two long
        names never share a directory.

    Returns
    -------
    component : `str`
        Characters other than letters, digits and ``._=+-`` become ``_``;
        at most about 200 characters; never ``.`` or ``..``.
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".") or "_"
    if len(cleaned) > _MAX_COMPONENT:
        cleaned = f"{cleaned[:_MAX_COMPONENT]}-{unique_suffix}"
    return cleaned
