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
import time

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
    """With a slow compressor the builder waits: never more than
    MAX_PENDING maps are queued, and callbacks run on the caller's thread."""
    release = threading.Event()
    running: list[int] = []
    slow_calls: list[list[str]] = []

    def slow_zip(entries: list[str]) -> str:
        release.wait(5)
        slow_calls.append(entries)
        return zip_entries(entries)

    monkeypatch.setattr(dependency_map, "zip_entries", slow_zip)
    caller = threading.get_ident()
    threads: list[int] = []
    with MapZipper() as zipper:
        for _ in range(dependency_map.MAX_PENDING):
            zipper.add([], lambda _z: threads.append(threading.get_ident()))
        assert len(zipper._pending) == dependency_map.MAX_PENDING and not threads
        timer = threading.Timer(0.2, release.set)
        timer.start()
        start = time.monotonic()
        zipper.add([], lambda _z: threads.append(threading.get_ident()))  # waits for the oldest
        running.append(len(zipper._pending))
        assert time.monotonic() - start >= 0.1
    assert running == [dependency_map.MAX_PENDING]
    assert threads == [caller] * 3 and len(slow_calls) == 3


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
