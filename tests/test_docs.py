# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Guard: every document the code and the docs cite is in this repository.

Code comments, docstrings and documents cite documents by path
(``doc/<name>.md``) and sections by number after the path
(``doc/wire-protocol.md`` §5). In a document a bare §N is one of its own
numbered sections (``## N. Title``), or, in a document without numbered
sections (``doc/local-vs-real.md``), one of the wire document's. A citation
of a file that does not exist, of a section the document lacks, of a quirk
§8 does not list, a shorthand such as "wire §10", or anything outside the
repository fails here, naming the file and the line.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIRE = "doc/wire-protocol.md"
SELF = "tests/test_docs.py"
MD_PATH = re.compile(r"(?<![\w/.-])((?:\.\./|[\w-]+/)*[\w-]+\.md)\b")
DATA_PATH = re.compile(r"(?<![\w/.-])tests/data/[\w./*-]*")
# Shorthands for the wire document ("wire §10", "wire-protocol.md section 5").
WIRE_CITE = re.compile(
    r"(?P<name>(?:doc/)?wire(?:[- ]protocol)?(?:\.md)?)`{0,2}[ \t]*\(?(?:§|section[ \t]+)(?P<num>\d+)",
    re.IGNORECASE,
)
SECTION = re.compile(r"§(\d+)(?:[ \t]+quirk[ \t]+(\d+))?")
# A document path right before a section sign: "doc/x.md §4", "x.md` §8, §10".
SECTION_OWNER = re.compile(r"((?:[\w-]+/)*[\w-]+\.md)`{0,2}[\s(),;§\d]*$")
OUTSIDE = re.compile(r"\.\./shared|shared/research|peer-behaviour|house-style\.md")


def _files() -> list[str]:
    """Tracked and new (not ignored) files of the checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    return sorted({name for name in out.decode().split("\0") if name and (ROOT / name).is_file()})


def _lines() -> Iterator[tuple[str, int, str]]:
    """Yield (file, line number, line) of every text file but this one."""
    for name in _files():
        if name == SELF:
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            yield name, number, line


def _md_target(cited: str, citing: str) -> str | None:
    """Return the repository path a cited ``.md`` path names, if any."""
    for base in (ROOT, (ROOT / citing).parent):
        candidate = (base / cited).resolve()
        if candidate.is_file() and candidate.is_relative_to(ROOT):
            return candidate.relative_to(ROOT).as_posix()
    return None


@functools.cache
def _sections(doc: str) -> frozenset[int]:
    """Return the numbers of a document's ``## N. Title`` sections."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return frozenset(int(n) for n in re.findall(r"^## (\d+)\. ", text, re.MULTILINE))


@functools.cache
def _quirks() -> frozenset[int]:
    """Return the numbers of the quirks listed in §8 of the wire document."""
    text = (ROOT / WIRE).read_text(encoding="utf-8")
    part8 = re.search(r"^## 8\. .*?(?=^## \d+\. |\Z)", text, re.MULTILINE | re.DOTALL)
    quirks_text = part8.group(0).split("Quirks", 1)[-1] if part8 else ""
    return frozenset(int(n) for n in re.findall(r"^(\d+)\. ", quirks_text, re.MULTILINE))


def _section_owner(name: str, before: str) -> str | None:
    """Return the document a section sign refers to, `None` if unclear.

    A document path just before it names the document; otherwise a
    document with numbered sections cites its own, and one without them
    (``doc/local-vs-real.md``) the wire document.
    """
    owner = SECTION_OWNER.search(before)
    if owner is not None:
        return _md_target(owner.group(1), name) or owner.group(1)
    if not name.endswith(".md"):
        return None
    return name if _sections(name) else WIRE


def _section_problems(name: str, number: int, line: str) -> list[str]:
    """Return what is wrong with the section citations of one line."""
    problems = [
        f"{name}:{number}: cite '{match.group(0)}' as '{WIRE} §N'"
        for match in WIRE_CITE.finditer(line)
        if match.group("name") != WIRE
    ]
    for match in SECTION.finditer(line):
        owner = _section_owner(name, line[: match.start()])
        if owner is None:
            continue
        if not (ROOT / owner).is_file():
            problems.append(f"{name}:{number}: §{match.group(1)} of a missing document {owner}")
        elif int(match.group(1)) not in _sections(owner):
            problems.append(f"{name}:{number}: {owner} has no section {match.group(1)}")
        elif match.group(2) and (owner, match.group(1)) != (WIRE, "8"):
            problems.append(f"{name}:{number}: only {WIRE} §8 lists quirks")
        elif match.group(2) and int(match.group(2)) not in _quirks():
            problems.append(f"{name}:{number}: {WIRE} §8 has no quirk {match.group(2)}")
    return problems


def test_wire_protocol_document_keeps_its_numbering() -> None:
    # Code and documents cite these numbers: renumbering breaks them.
    assert _sections(WIRE) == set(range(1, 17))
    assert _quirks() == set(range(1, 8))


def test_cited_documents_exist() -> None:
    missing = [
        f"{name}:{number}: {cited}"
        for name, number, line in _lines()
        for cited in MD_PATH.findall(line)
        if _md_target(cited, name) is None
    ]
    assert missing == [], "documents cited but not in the repository:\n" + "\n".join(missing)


def test_cited_test_data_exists() -> None:
    missing = []
    for name, number, line in _lines():
        for cited in DATA_PATH.findall(line):
            if not any(ROOT.glob(cited.rstrip("./"))):
                missing.append(f"{name}:{number}: {cited}")
    assert missing == [], "recorded data cited but not in tests/data:\n" + "\n".join(missing)


def test_cited_sections_exist() -> None:
    problems = [
        problem for name, number, line in _lines() for problem in _section_problems(name, number, line)
    ]
    assert problems == [], "\n".join(problems)


def test_nothing_points_outside_the_repository() -> None:
    offenders = [
        f"{name}:{number}: {line.strip()}" for name, number, line in _lines() if OUTSIDE.search(line)
    ]
    assert offenders == [], "citations of documents outside this repository:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("python/x.py", "see ``doc/wire-protocol.md`` §5", []),
        ("python/x.py", "rows (doc/wire-protocol.md §8, §10)", []),
        ("python/x.py", "see wire-protocol.md section 5", ["as 'doc/wire-protocol.md §N'"]),
        ("python/x.py", "buckets (wire §10)", ["as 'doc/wire-protocol.md §N'"]),
        ("python/x.py", "see doc/wire-protocol.md §99", ["has no section 99"]),
        ("python/x.py", "see doc/wire-protocol.md §8, §42", ["has no section 42"]),
        ("python/x.py", "see doc/no-such-doc.md §1", ["missing document"]),
        ("python/x.py", "paragraph §3 of the licence", []),
        ("doc/local-vs-real.md", "real: null [§8 quirk 1]", []),
        ("doc/local-vs-real.md", "real: null [§8 quirk 9]", ["has no quirk 9"]),
        ("doc/local-vs-real.md", "real: [§17]", ["doc/wire-protocol.md has no section 17"]),
        ("doc/local-vs-real.md", "see `doc/command-line.md` §9", ["doc/command-line.md has no section 9"]),
        ("doc/command-line.md", "as in §4", []),
        ("doc/command-line.md", "as in §7", ["doc/command-line.md has no section 7"]),
        ("doc/command-line.md", "(`doc/wire-protocol.md` §12)", []),
    ],
)
def test_section_checker(name: str, line: str, expected: list[str]) -> None:
    problems = _section_problems(name, 1, line)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_document_checker() -> None:
    assert _md_target("doc/no-such-document.md", "README.md") is None
    assert _md_target("../shared/research/wire-protocol.md", "doc/local-vs-real.md") is None
    assert _md_target("local-vs-real.md", "doc/design.md") == "doc/local-vs-real.md"
    assert MD_PATH.findall("see ../shared/research/wire-protocol.md") == [
        "../shared/research/wire-protocol.md"
    ]
    assert OUTSIDE.search("see ../shared/research/wire-protocol.md")
