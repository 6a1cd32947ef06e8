# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of the command-line composition, including a round trip through
the reference site decoder and ours."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prepare_helpers import make_config, works

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowExec, GenericWorkflowFile, GenericWorkflowJob
from lsst.ctrl.bps.panda.command_line import (
    ATTEMPT_PLACEHOLDER,
    CommandLineError,
    CommandTemplate,
    FileRef,
    ResolveContext,
    check_name,
    check_value,
    compose_runner_command,
    decode_hex,
    encode_hex,
    export_prefix,
    files_field,
    shell_unsafe,
)
from lsst.ctrl.bps.panda.panda_workflow import PandaBpsWmsWorkflow
from lsst.ctrl.bps.panda.staging import stage_files

DECODER = Path(__file__).resolve().parents[1] / "python/lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))


@given(_TEXT)
def test_hex_round_trip(command: str) -> None:
    encoded = encode_hex(command)
    assert set(encoded) <= set("0123456789abcdef")
    assert decode_hex(encoded) == command


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["A", "B_2", "C"]), _TEXT, min_size=1))
def test_exports_survive_the_shell(environment: dict[str, str]) -> None:
    """Spaces, ;, quotes, $ and newlines reach the job unchanged."""
    script = export_prefix(environment) + 'printf "%s\\0" ' + " ".join(f'"${k}"' for k in environment)
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    assert done.stdout.decode().split("\0")[:-1] == list(environment.values())


def test_export_prefix_quotes() -> None:
    assert export_prefix({"A": "x y;z", "B": "it's"}) == "export A='x y;z'; export B='it'\"'\"'s'; "
    assert export_prefix({}) == ""


def _context(**files: FileRef) -> ResolveContext:
    return ResolveContext("job1", {"USER": "alice"}, files, tuple(files))


def _resolve(arguments: str, cmdvals: dict, environment: dict | None = None, **files: FileRef) -> str:
    template = CommandTemplate("/bin/run", arguments, environment or {}, ("qgraphNodeId", "qgraphId"))
    return template.resolve(template.values(cmdvals), _context(**files)).text


def test_variables_filled_lazy_kept() -> None:
    text = _resolve("{a} x{b} ${HOME} {qgraphNodeId} {0}", {"a": 1, "b": "v", "qgraphNodeId": "n"})
    assert text == "/bin/run 1 xv ${HOME} {qgraphNodeId} {0}"


def test_missing_variable_is_key_error() -> None:
    template = CommandTemplate("/bin/run", "{nope}", {}, ())
    with pytest.raises(KeyError, match="nope"):
        template.values({})


def test_env_placeholders() -> None:
    text = _resolve("<ENV:USER> <ENV:HOME> <ENV:NOT_SET>", {})
    assert text == "/bin/run alice <ENV:HOME> <ENV:NOT_SET>"


def test_wms_attempt_becomes_env() -> None:
    assert _resolve("--attempt <WMS:attemptNum>", {}) == f"/bin/run --attempt {ATTEMPT_PLACEHOLDER}"
    with pytest.raises(CommandLineError, match="job1.*<WMS:other>"):
        _resolve("<WMS:other>", {})


def test_file_placeholders() -> None:
    template = CommandTemplate("/bin/run", "<FILE:remote> <FILE:local>", {}, ())
    context = _context(remote=FileRef("s3://b/f"), local=FileRef(None))
    resolved = template.resolve((), context)
    assert resolved.text == "/bin/run s3://b/f <FILE:local>"
    assert resolved.worker_files == ("local",)
    with pytest.raises(CommandLineError, match="job1.*<FILE:other>"):
        _resolve("<FILE:other>", {})


def test_environment_values_filled_then_quoted() -> None:
    text = _resolve("run", {"v": "a b'c"}, {"X": "{v}/{qgraphNodeId}"})
    assert text == "export X='a b'\"'\"'c/{qgraphNodeId}'; /bin/run run"


def test_resolution_cached_per_values() -> None:
    template = CommandTemplate("/bin/run", "{a} {qgraphNodeId}", {}, ("qgraphNodeId",))
    first = template.resolve((1,), _context())
    assert template.cached((1,), ()) is first
    assert template.cached((2,), ()) is None
    assert first.lazy == ("qgraphNodeId",)


def test_pseudo_names() -> None:
    template = CommandTemplate("/bin/run", "{qgraphNodeId}", {}, ("qgraphNodeId", "qgraphId"))
    command = template.resolve((), _context())
    assert command.lazy == ("qgraphNodeId",)
    cmdvals = {"qgraphNodeId": "a,b", "qgraphId": 7}
    assert command.pseudo_name("j", "j", cmdvals) == "j+qgraphNodeId:a,b+qgraphId:"
    both = CommandTemplate("/bin/run", "{qgraphId} {qgraphNodeId}", {}, ("qgraphNodeId", "qgraphId"))
    assert both.resolve((), _context()).pseudo_name("j", "b", cmdvals) == "b+qgraphNodeId:a,b+qgraphId:7"
    none = CommandTemplate("/bin/run", "", {}, ("qgraphNodeId", "qgraphId")).resolve((), _context())
    assert none.pseudo_name("j", "b", cmdvals) == "b+qgraphNodeId:+qgraphId:"
    with pytest.raises(CommandLineError, match="'j'.*no value"):
        command.pseudo_name("j", "j", {})
    with pytest.raises(CommandLineError, match="'j'.*12:30"):
        command.pseudo_name("j", "j", {"qgraphNodeId": "12:30"})


@pytest.mark.parametrize(
    "bad",
    ["a+b", "a:b", "a b", "a\tb", "", "a$(x)", "a;b", "a`x`", "a'b", 'a"b', "a|b", "a\\b", "~a", "a\x01"],
)
def test_check_name_rejects(bad: str) -> None:
    with pytest.raises(CommandLineError, match="'job9'"):
        check_name("job9", "file key", bad)


@pytest.mark.parametrize("bad", ["a+b", "a:b", "a b", "it's", "x\n", "$(x)", "a;b", "a&b", "a>b", "a*"])
def test_check_value_rejects(bad: str) -> None:
    with pytest.raises(CommandLineError, match="'job9'"):
        check_value("job9", "value", bad)
    assert check_value("job9", "value", "") == ""


@pytest.mark.parametrize("good", ["isr_903342_10", "HSC-I", "g~ND_1.2,x", "a/b", "run=1", "100%", "x@y"])
def test_check_name_accepts_real_names(good: str) -> None:
    assert check_name("job9", "job name", good) == good


def test_shell_unsafe_lists_each_character_once() -> None:
    assert shell_unsafe("a$(b)$c ~") == "$() "
    assert shell_unsafe("~home") == "~"
    assert shell_unsafe("s3://bucket/run_1/") == ""


def test_fields() -> None:
    assert files_field({"a": "f.txt", "d": "dir/"}) == "a:f.txt+d:dir/"
    assert files_field({}) == "cmdlineplaceholder:cmdlineplaceholder"
    command = compose_runner_command("pre _cmd_line_ post", "6869", "file:///d/", "a:f", "")
    assert command == "pre 6869 ${IN/L} file:///d/  a:f cmdlineplaceholder post"


# ------------------------------------------------------------------ round trip

_SCRIPT = '#!/bin/sh\necho "exe $1|$2"\n'
_ARGUMENTS = (
    '"{who}" "{qgraphNodeId}" > out; '
    'echo "$A|$B|<ENV:DECODER_TEST>|<WMS:attemptNum>|<FILE:runQgraphFile>|<FILE:butlerConfig>" >> out; '
    "cat <FILE:runQgraphFile> <FILE:butlerConfig>butler.yaml >> out"
)
_EXPECTED = 'exe static value|n1,n2\nx y;z|it\'s "q" $HOME|same value|2|job.qgraph|repo/\nQGB'


def _round_trip_workflow(tmp_path: Path) -> GenericWorkflow:
    source = tmp_path / "src"
    (source / "repo").mkdir(parents=True)
    (source / "job.qgraph").write_text("QG")
    (source / "repo/butler.yaml").write_text("B")
    (source / "run.sh").write_text(_SCRIPT)
    workflow = GenericWorkflow("rt")
    files = [
        GenericWorkflowFile("runQgraphFile", src_uri=str(source / "job.qgraph"), wms_transfer=True),
        GenericWorkflowFile("butlerConfig", src_uri=str(source / "repo"), wms_transfer=True),
    ]
    for gwfile in files:
        workflow.add_file(gwfile)
    job = GenericWorkflowJob(
        "isr_1",
        label="isr",
        executable=GenericWorkflowExec("run.sh", str(source / "run.sh"), True),
        arguments=_ARGUMENTS,
        cmdvals={"who": "static value", "qgraphNodeId": "n1,n2"},
        environment={"A": "x y;z", "B": 'it\'s "q" $HOME'},
    )
    workflow.add_job(job)
    workflow.add_job_inputs("isr_1", files)
    return workflow


def _prepared_line(tmp_path: Path, mode: str) -> tuple[str, Path]:
    """Prepare and stage the round-trip job; return its pilot line with
    ${IN/L} replaced as PanDA does, and the distribution directory."""
    maps = {"plain": {}, "job_name_map": {"enableJobNameMap": True}, "qnode_map": {"enableQnodeMap": True}}
    config = make_config(tmp_path, runnerCommand="DECODER _cmd_line_", **maps[mode])
    workflow = PandaBpsWmsWorkflow.from_generic_workflow(
        config, _round_trip_workflow(tmp_path), str(tmp_path / "submit"), "x"
    )
    stage_files(workflow.files_to_stage, workflow.distribution_endpoint, 2)
    (work,) = works(workflow)
    (entry,) = work.dependency_map
    assert (
        entry["name"]
        == {
            "plain": "isr_1+qgraphNodeId:n1,n2+qgraphId:",
            "job_name_map": "isr:orderIdMap_0",
            "qnode_map": "PH:isr_1",
        }[mode]
    )
    return work.executable.replace("${IN/L}", entry["name"]), tmp_path / "dist"


def _run_line(line: str, launcher: str, work: Path, pythonpath: str) -> str:
    work.mkdir()
    env = {**os.environ, "DECODER_TEST": "same value", "PanDA_AttemptNr": "2", "PYTHONPATH": pythonpath}
    command = line.replace("DECODER", launcher, 1)
    done = subprocess.run(
        ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (work / "out").read_text()


@pytest.mark.parametrize("mode", ["plain", "job_name_map", "qnode_map"])
def test_round_trip_through_both_decoders(tmp_path: Path, reference_shadow: Path, mode: str) -> None:
    """Our composed line, run by the site's decoder and by ours, runs
    exactly the intended command."""
    line, _ = _prepared_line(tmp_path, mode)
    reference = reference_shadow / "lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
    theirs = _run_line(line, f"{sys.executable} {reference}", tmp_path / "theirs", str(reference_shadow))
    ours = _run_line(line, f"{sys.executable} {DECODER}", tmp_path / "ours", "")
    assert theirs == ours == _EXPECTED
