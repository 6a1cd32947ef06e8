# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of the dependency-map text and the background zipper: the text
is exactly what json.dumps writes and every zipped map reads back with
iDDS's own unzip."""

import json
import sys
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from idds.doma.workflowv2.domapandawork import DomaPanDAWork

from lsst.ctrl.bps.panda import dependency_map
from lsst.ctrl.bps.panda.dependency_map import (
    MapZipper,
    encode_name,
    job_references,
    map_entries,
    reference_names,
    zip_entries,
    zip_map,
    zip_text,
)

_NAMES = st.text(min_size=1, max_size=30)  # quotes, backslashes, control and non-ASCII characters


def _unzip(zipped: str) -> object:
    return DomaPanDAWork(executable="x", dependency_map=[]).unzip_data(zipped)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, st.lists(st.tuples(_NAMES, _NAMES), max_size=4)), max_size=20),
    st.integers(min_value=0, max_value=10**7),
)
def test_map_entries_are_json_dumps(jobs: list[tuple[str, list[tuple[str, str]]]], first: int) -> None:
    """Any names, any parents: the text equals compact json.dumps of the
    entries iDDS expects, and zipped it reads back as those entries."""
    entries = [
        {
            "name": name,
            "order_id": first + index,
            "dependencies": [{"task": task, "inputname": parent} for task, parent in parents],
        }
        for index, (name, parents) in enumerate(jobs)
    ]
    refs = [[job_references(encode_name(t), [encode_name(p)])[0] for t, p in parents] for _, parents in jobs]
    pieces = map_entries([encode_name(name) for name, _ in jobs], first, refs)
    text = "[" + ",".join(pieces) + "]"
    assert text == json.dumps(entries, separators=(",", ":"))
    assert _unzip(zip_text(text)) == entries
    assert zip_map(entries) == zip_text(text)
    assert _unzip(zip_entries(pieces)) == entries


@settings(max_examples=200, deadline=None)
@given(_NAMES, st.lists(_NAMES, max_size=10))
def test_reference_names_inverts_job_references(task: str, names: list[str]) -> None:
    """Any task and map names: the names taken back from the references
    are the literals they were made from, and the references read as the
    entries iDDS expects."""
    literals = [encode_name(name) for name in names]
    references = job_references(encode_name(task), literals)
    assert reference_names(encode_name(task), references) == literals
    assert [json.loads(ref) for ref in references] == [{"task": task, "inputname": name} for name in names]


def test_zipper_delivers_every_map_in_order() -> None:
    """Maps queued in turn come back zipped to their own callback, in
    order, and read back with iDDS; the GIL switch interval is short while
    the zipper runs and restored after."""
    maps = [
        map_entries([encode_name(f"job_{i}_{k}") for k in range(i * 150)], 0, [[]] * i * 150)
        for i in range(12)
    ]
    texts = ["[" + ",".join(entries) + "]" for entries in maps]
    got: list[tuple[int, str]] = []
    interval = sys.getswitchinterval()
    with MapZipper() as zipper:
        assert sys.getswitchinterval() <= dependency_map.SWITCH_INTERVAL
        for index, entries in enumerate(maps):
            zipper.add(entries, lambda zipped, index=index: got.append((index, zipped)))
    assert sys.getswitchinterval() == interval
    assert [index for index, _ in got] == list(range(12))
    assert [_unzip(zipped) for _, zipped in got] == [json.loads(text) for text in texts]


def test_zipper_bounds_the_maps_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to MAX_PENDING maps are queued without waiting; each further
    ``add`` first delivers the oldest, so no more than MAX_PENDING wait.
    Callbacks run on the caller's thread, in the order of the maps."""
    release = threading.Event()
    zipped: list[list[str]] = []

    def gated_zip(entries: list[str]) -> str:
        if not release.wait(60):  # a safety net only: the test sets it
            raise AssertionError("the compressor was never released")
        zipped.append(entries)
        return zip_entries(entries)

    monkeypatch.setattr(dependency_map, "zip_entries", gated_zip)
    caller = threading.get_ident()
    delivered: list[tuple[int, int]] = []

    def done_for(index: int) -> Callable[[str], None]:
        return lambda _zipped: delivered.append((index, threading.get_ident()))

    limit = dependency_map.MAX_PENDING
    with MapZipper() as zipper:
        for index in range(limit):  # the compressor is stuck: none can be delivered
            zipper.add([json.dumps(index)], done_for(index))
        assert delivered == []
        release.set()
        after_each_add = []
        for index in range(limit, limit + 3):
            zipper.add([json.dumps(index)], done_for(index))
            after_each_add.append([i for i, _ in delivered])
    assert after_each_add == [list(range(k + 1)) for k in range(3)]
    assert delivered == [(index, caller) for index in range(limit + 3)]
    assert zipped == [[json.dumps(index)] for index in range(limit + 3)]


def test_zipper_stops_its_thread_on_error() -> None:
    """An exception while building leaves no thread behind and delivers
    nothing more."""
    before = {t.name for t in threading.enumerate()}
    interval = sys.getswitchinterval()
    got: list[str] = []
    with pytest.raises(RuntimeError, match="stop"), MapZipper() as zipper:
        zipper.add([], got.append)
        raise RuntimeError("stop")
    assert sys.getswitchinterval() == interval
    assert not [t for t in threading.enumerate() if t.name.startswith("map-zip") and t.name not in before]
    assert got == []
