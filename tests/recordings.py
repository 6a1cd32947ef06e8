# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""The existing plugin's recordings in ``tests/data/<case>/`` and the scripts
that made them.

A test compares this package with ``existing_plugin.json`` of a case, and
reuses the inputs of the script that recorded it. Scripts are imported by
path, under their own file name, never through ``sys.path``: two scripts of
one module name on ``sys.path`` once broke a full-suite run.
"""

from __future__ import annotations

__all__ = ["DATA", "recorded", "script"]

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

DATA = Path(__file__).parent / "data"
"""The recordings, one directory per case."""


def recorded(case: str) -> Any:
    """Return a case's recording.

    Parameters
    ----------
    case : `str`
        Directory below ``tests/data``.

    Returns
    -------
    recording : `typing.Any`
        The parsed ``existing_plugin.json``.
    """
    return json.loads((DATA / case / "existing_plugin.json").read_text())


def script(case: str, name: str) -> ModuleType:
    """Import a case's script by path.

    Parameters
    ----------
    case : `str`
        Directory below ``tests/data``.
    name : `str`
        The script's module name (its file name without ``.py``).

    Returns
    -------
    module : `types.ModuleType`
        The imported script (its ``main`` not run).
    """
    spec = importlib.util.spec_from_file_location(name, DATA / case / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
