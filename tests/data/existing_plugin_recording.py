# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""What the scripts recording the existing PanDA plugin share.

Each ``tests/data/<case>/record_*.py`` runs with a Python that has the
*existing* plugin (``lsst-ctrl-bps-panda`` from PyPI) installed, never this
package, and writes ``existing_plugin.json`` next to itself. A script that
uploads to a PanDA cache needs one to upload to (a local service's
``panda-local env``)::

    python -m venv /tmp/oldplugin-venv
    /tmp/oldplugin-venv/bin/pip install lsst-ctrl-bps-panda
    panda-local start --state-dir /tmp/rec-state --port 0
    eval "$(panda-local env --state-dir /tmp/rec-state)"
    cd tests/data/<case>
    PANDA_BEHIND_REAL_LB=1 /tmp/oldplugin-venv/bin/python record_<...>.py
    panda-local stop --state-dir /tmp/rec-state

The scripts import this module from their parent directory; its name is
unlike any module of ``tests/`` because the tests import the scripts.
"""

from __future__ import annotations

__all__ = ["existing_plugin_version", "normalise_archive", "write_recording"]

import json
import os
import re
import sys
from pathlib import Path
from typing import Any


def existing_plugin_version() -> str:
    """Return the existing plugin's version; exit if this package is found.

    Returns
    -------
    version : `str`
        Version of the installed ``lsst-ctrl-bps-panda``.
    """
    import lsst.ctrl.bps.panda

    if "site-packages" not in lsst.ctrl.bps.panda.__file__:
        sys.exit("run this with the existing plugin installed from PyPI, not this package")
    from importlib.metadata import version

    return version("lsst-ctrl-bps-panda")


def normalise_archive(text: str) -> str:
    """Replace the archive uuid and the cache URL prefix by placeholders.

    Parameters
    ----------
    text : `str`
        Text naming a job archive uploaded to ``PANDACACHE_URL``.

    Returns
    -------
    text : `str`
        The text with ``jobO.<uuid>.tar.gz`` and ``<PANDACACHE_URL>``.
    """
    text = re.sub(r"jobO\.[0-9a-f-]{36}\.tar\.gz", "jobO.<uuid>.tar.gz", text)
    return text.replace(os.environ["PANDACACHE_URL"], "<PANDACACHE_URL>")


def write_recording(
    script: str, recorded: dict[str, Any], indent: int = 2, replace: tuple[str, str] | None = None
) -> None:
    """Write a recording as ``existing_plugin.json`` next to its script.

    Parameters
    ----------
    script : `str`
        The recording script (its ``__file__``).
    recorded : `dict` [`str`, `~typing.Any`]
        What it recorded.
    indent : `int`, optional
        JSON indentation.
    replace : `tuple` [`str`, `str`], optional
        A text to replace in the JSON text, and its replacement (e.g. a
        scratch directory and a placeholder).
    """
    text = json.dumps(recorded, indent=indent, sort_keys=True)
    if replace is not None:
        text = text.replace(*replace)
    out = Path(script).with_name("existing_plugin.json")
    out.write_text(text + "\n")
    print(f"wrote {out}")
