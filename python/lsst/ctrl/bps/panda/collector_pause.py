# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Pausing Python's cyclic garbage collector while a large workflow is built.

Translating a workflow creates millions of small acyclic containers (job
descriptions, references, map entries). Each one counts towards the
collector's thresholds, and every full collection walks every live object,
the workflow's own millions included, to free nothing: none of them is in
a reference cycle. Pausing the collector for the translation makes its
cost linear in the number of jobs.
"""

from __future__ import annotations

__all__ = ["collector_paused"]

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, if it runs.

    Reference counting still frees every acyclic object at once; the
    collector runs again (if it was enabled) when the block exits, however
    it exits.

    Yields
    ------
    None
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
