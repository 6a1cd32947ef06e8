# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""End-to-end tests of the edge-node decoder, run in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lsst.ctrl.bps.panda.command_line import encode_hex
from lsst.ctrl.bps.panda.edgenode.cmd_line_decoder import (
    EXIT_DATA,
    EXIT_NO_INPUT,
    EXIT_USAGE,
    JobArguments,
    resolve_command,
)
from lsst.ctrl.bps.panda.staging import stage_files

DECODER = Path(__file__).resolve().parents[1] / "python/lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
MODULE = "lsst.ctrl.bps.panda.edgenode.cmd_line_decoder"


def _write_tree(root: Path, contents: dict[str, str]) -> None:
    for relative, text in contents.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


@dataclass
class Job:
    """A job directory plus a distribution endpoint holding its files."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def add(self, key: str, name: str, text: str = "") -> None:
        path = self.dist / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.files[key] = name

    def add_dir(self, key: str, name: str, contents: dict[str, str]) -> None:
        _write_tree(self.dist / name, contents)
        self.files[key] = name + "/"

    def argv(self, command: str, params: str, direct_io: str = "cmdlineplaceholder") -> list[str]:
        files = "+".join(f"{k}:{v}" for k, v in self.files.items())
        return [encode_hex(command), params, str(self.dist), files, direct_io]

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, python: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        launcher = python or [sys.executable, str(DECODER)]
        environ = {**os.environ, "PanDA_AttemptNr": "3", "DECODER_TEST": "it works", **(env or {})}
        return subprocess.run(
            launcher + argv, cwd=self.work, env=environ, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def job(tmp_path: Path) -> Job:
    new = Job(tmp_path)
    new.dist.mkdir()
    new.work.mkdir()
    return new


def test_placeholders_env_and_files(job: Job) -> None:
    job.add("runQgraphFile", "job.qgraph", "QG")
    job.add_dir("butlerConfig", "repo", {"butler.yaml": "datastore: {root: x}\n", "sub/dir/leaf.txt": "leaf"})
    job.add("job_executable", "run.sh", '#!/bin/bash\necho "exe $1"\n')
    command = (
        "export A='x y;z'; export B=\"$A!\"; "
        'echo "$A|$B|<ENV:DECODER_TEST>|<WMS:attemptNum>|{qgraphNodeId}|{qgraphId}"; '
        "echo <FILE:runQgraphFile> <FILE:butlerConfig>; cat <FILE:runQgraphFile>; echo; "
        './<FILE:job_executable> "{qgraphNodeId}"; cat repo/sub/dir/leaf.txt'
    )
    done = job.run(job.argv(command, "isr_3_7+qgraphNodeId:aa11,bb22+qgraphId:17000_99"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "x y;z|x y;z!|it works|3|aa11,bb22|17000_99",
        "job.qgraph repo/",
        "QG",
        "exe aa11,bb22",
        "leaf",
    ]
    assert (job.work / "repo" / "butler.yaml").read_text() == "datastore: {root: x}\n"
    assert os.access(job.work / "run.sh", os.X_OK)


def test_direct_io_not_copied(job: Job) -> None:
    job.add("runQgraphFile", "job.qgraph", "QG")
    job.add("butlerConfig", "butler.yaml", "b")
    done = job.run(job.argv("echo <FILE:runQgraphFile>", "j+qgraphId:1", "runQgraphFile"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "job.qgraph\n"
    assert not (job.work / "job.qgraph").exists()
    assert (job.work / "butler.yaml").read_text() == "b"


def test_values_may_contain_colons(job: Job) -> None:
    done = job.run(job.argv("echo {when} {empty}.", "j+when:12:30:00+empty:"))
    assert (done.returncode, done.stdout) == (0, "12:30:00 .\n")


def test_qnode_map(job: Job) -> None:
    job.add("qnodemap", "qnode_map.json", json.dumps({"PH:job7": "job7+qgraphNodeId:n7+qgraphId:g"}))
    done = job.run(job.argv("echo {qgraphNodeId} {qgraphId}", "PH:job7"))
    assert (done.returncode, done.stdout) == (0, "n7 g\n"), done.stderr


@pytest.mark.parametrize(("params", "expected"), [("isr:orderIdMap_3", "n3"), ("isr:eventservice_2^2", "n3")])
def test_order_id_map(job: Job, params: str, expected: str) -> None:
    mapping = {"isr": {str(i): f"isr_{i}+qgraphNodeId:n{i}+qgraphId:g" for i in range(5)}}
    job.add("orderIdMapFilename", "order_map.json", json.dumps(mapping))
    done = job.run(job.argv("echo {qgraphNodeId}", params))
    assert (done.returncode, done.stdout) == (0, f"{expected}\n"), done.stderr


def test_order_id_map_missing_entry(job: Job) -> None:
    job.add("orderIdMapFilename", "order_map.json", json.dumps({"isr": {"0": "isr_0+x:y"}}))
    done = job.run(job.argv("touch ran", "calibrate:orderIdMap_0"))
    assert done.returncode == EXIT_DATA
    assert "calibrate/0" in done.stderr
    assert not (job.work / "ran").exists()


def test_file_uri_endpoint_and_existing_order_map_kept(job: Job) -> None:
    job.add("orderIdMapFilename", "order_map.json", json.dumps({"a": {"1": "a_1+k:dist"}}))
    (job.work / "order_map.json").write_text(json.dumps({"a": {"1": "a_1+k:local"}}))
    argv = job.argv("echo {k}", "a:orderIdMap_1")
    argv[2] = f"file://{job.dist}"
    done = job.run(argv)
    assert (done.returncode, done.stdout) == (0, "local\n"), done.stderr


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("exit 7", 7),
        ("true", 0),
        ("kill -KILL $$", 128 + signal.SIGKILL),
        ("echo before; kill -TERM $$", 128 + signal.SIGTERM),
        ("sh -c 'kill -SEGV $$'; exit $?", 128 + signal.SIGSEGV),
    ],
)
def test_exit_code_propagation(job: Job, command: str, code: int) -> None:
    assert job.run(job.argv(command, "j")).returncode == code


def test_signal_forwarded_to_payload_group(job: Job) -> None:
    argv = job.argv("echo started; sleep 30; echo never", "j")
    process = subprocess.Popen(
        [sys.executable, str(DECODER), *argv], cwd=job.work, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM
    assert rest == ""
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
def test_early_signal_leaves_no_payload_behind(job: Job, delay: float) -> None:
    """A signal right after the decoder says it starts the payload (the
    window before its handlers existed) must not leave the payload running
    without the decoder: either the payload never starts or it gets the
    signal too."""
    marker = job.root / "payload-survived"
    argv = job.argv(f"sleep 2; touch {marker}", "j")
    process = subprocess.Popen(
        [sys.executable, str(DECODER), *argv], cwd=job.work, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    assert "running in" in process.stderr.readline()
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode in (128 + signal.SIGTERM, -signal.SIGTERM)
    time.sleep(3)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["abc", "j", "d", "", "cmdlineplaceholder"], EXIT_DATA, "not hex"),
        (["fffe", "j", "d", "", "cmdlineplaceholder"], EXIT_DATA, "not hex"),
        (["00", "j"], EXIT_USAGE, "expected 5 arguments"),
        ([encode_hex("true"), "j", "d", "nokey", "x"], EXIT_DATA, "'nokey'"),
        ([encode_hex("echo <ENV:NOPE_1> <ENV:NOPE_2>"), "j", "d", "", "x"], EXIT_DATA, "NOPE_1, NOPE_2"),
        ([encode_hex("echo <FILE:nope>"), "j", "d", "", "x"], EXIT_DATA, "FILE placeholder(s): nope"),
        ([encode_hex("echo <WMS:other>"), "j", "d", "", "x"], EXIT_DATA, "WMS placeholder(s): other"),
        ([encode_hex("echo {a}"), "j+bad", "d", "", "x"], EXIT_DATA, "'bad'"),
    ],
)
def test_decoder_errors(job: Job, argv: list[str], code: int, message: str) -> None:
    done = job.run(argv)
    assert done.returncode == code
    assert "cmd_line_decoder: error:" in done.stderr
    assert message in done.stderr


def test_missing_file_stops_before_payload(job: Job) -> None:
    job.add("a", "a.txt", "a")
    job.files["runQgraphFile"] = "missing.qgraph"
    done = job.run(job.argv("touch ran", "j"))
    assert done.returncode == EXIT_NO_INPUT
    assert "runQgraphFile:missing.qgraph" in done.stderr
    assert not (job.work / "ran").exists()


def test_job_archive(job: Job, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "custom.sh").write_text("#!/bin/bash\necho custom $1\n")
    archive = tmp_path / "jobO.1234.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(payload / "custom.sh", arcname="custom.sh")
    job.files["job_executable"] = "custom.sh"
    done = job.run(job.argv("./custom.sh {x}", "j+x:ok", f"file://{archive}"))
    assert (done.returncode, done.stdout) == (0, "custom ok\n"), done.stderr
    assert not (job.work / archive.name).exists()


def test_runs_without_site_packages(job: Job) -> None:
    """A worker without lsst.ctrl.bps or lsst.resources: shutil copies."""
    job.add_dir("butlerConfig", "cfg", {"a/b.txt": "b"})
    done = job.run(
        job.argv("cat cfg/a/b.txt; echo {v}", "j+v:1"), python=[sys.executable, "-S", "-I", str(DECODER)]
    )
    assert (done.returncode, done.stdout) == (0, "b1\n"), done.stderr


def test_run_as_module(job: Job) -> None:
    done = job.run(job.argv("echo {v} <ENV:DECODER_TEST>", "j+v:1"), python=[sys.executable, "-m", MODULE])
    assert (done.returncode, done.stdout) == (0, "1 it works\n"), done.stderr


def test_resolve_command_in_process(tmp_path: Path) -> None:
    arguments = JobArguments("", "j+a:1+b:x y", "dist", {"qg": "f.qg"}, "qg")
    command = resolve_command(
        "{a} {b} <FILE:qg> <ENV:V> <WMS:attemptNum> {c}",
        arguments,
        tmp_path,
        {"V": "v", "PanDA_AttemptNr": "0"},
    )
    assert command == "1 x y f.qg v 0 {c}"


# Same command lines through the decoder shipped in the existing plugin
# (what sites run): both must run the same command with the same files;
# the reference decoder comes from the conftest fixtures.


@dataclass(frozen=True)
class Case:
    command: str
    params: str
    files: dict[str, str | dict[str, str]] = field(default_factory=dict)
    direct_io: str = "cmdlineplaceholder"


CASES = {
    "peer_example": Case(
        "echo RUN node={qgraphNodeId} qg=<FILE:runQgraphFile> home=<ENV:HOME> > out; exit 3",
        "label1_1_10+qgraphNodeId:aaaa,bbbb+qgraphId:",
        {"runQgraphFile": "test.qg"},
    ),
    "exports_and_files": Case(
        "export A='x y'; export B=\"$A;z\"; export C=1; "
        'echo "$A|$B|$C|{qgraphId}|<ENV:DECODER_TEST>" > out; cat <FILE:runQgraphFile> >> out; '
        "cat <FILE:butlerConfig>butler.yaml >> out; ./<FILE:job_executable> {qgraphNodeId} >> out",
        "isr_7+qgraphNodeId:n7,n8+qgraphId:1700_5",
        {
            "runQgraphFile": "job.qgraph",
            "butlerConfig": {"butler.yaml": "datastore: x\n"},
            "job_executable": "#!/bin/sh\necho exe $1\n",
        },
    ),
    "direct_io": Case(
        "echo <FILE:runQgraphFile> <FILE:butlerConfig> > out; ls > listing",
        "j+qgraphId:1",
        {"runQgraphFile": "job.qgraph", "butlerConfig": "butler.yaml"},
        "runQgraphFile",
    ),
    "qnode_map": Case(
        "echo {qgraphNodeId} {qgraphId} > out",
        "PH:job7",
        {"qnodemap": {"PH:job7": "job7+qgraphNodeId:n7+qgraphId:g"}},
    ),
    "order_id_map": Case(
        "echo {qgraphNodeId} > out",
        "isr:orderIdMap_3",
        {"orderIdMapFilename": {"isr": {str(i): f"isr_{i}+qgraphNodeId:n{i}" for i in range(5)}}},
    ),
    "event_service": Case(
        "echo {qgraphNodeId} > out",
        "isr:eventservice_2^2",
        {"orderIdMapFilename": {"isr": {str(i): f"isr_{i}+qgraphNodeId:n{i}" for i in range(5)}}},
    ),
    # The reference decoder needs a non-empty FILES field.
    "signal": Case("echo x > out; kill -TERM $$", "j", {"runQgraphFile": "a.qg"}),
    "unknown_env": Case("echo <ENV:NOT_SET_ANYWHERE> > out", "j", {"runQgraphFile": "a.qg"}),
}


def _materialise(case: Case, root: Path) -> list[str]:
    """Write the case's distribution directory; return the decoder argv."""
    dist = root / "dist"
    dist.mkdir()
    names = {}
    for key, content in case.files.items():
        if key in ("qnodemap", "orderIdMapFilename"):
            names[key] = "qnode_map.json" if key == "qnodemap" else "order_map.json"
            (dist / names[key]).write_text(json.dumps(content))
        elif isinstance(content, dict):
            names[key] = f"{key}_dir/"
            for relative, text in content.items():
                (dist / names[key] / relative).parent.mkdir(parents=True, exist_ok=True)
                (dist / names[key] / relative).write_text(text)
        else:
            names[key] = key if content.startswith("#!") else content
            (dist / names[key]).write_text(content if content.startswith("#!") else f"{key} content\n")
    files = "+".join(f"{key}:{name}" for key, name in names.items())
    return [encode_hex(case.command), case.params, str(dist), files, case.direct_io]


def _outcome(launcher: list[str], argv: list[str], work: Path, pythonpath: str) -> tuple:
    work.mkdir()
    env = {**os.environ, "DECODER_TEST": "same value", "PYTHONPATH": pythonpath}
    done = subprocess.run(launcher + argv, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    produced = {
        str(path.relative_to(work)): (path.read_text(), os.access(path, os.X_OK))
        for path in sorted(work.rglob("*"))
        if path.is_file()
    }
    return done.returncode != 0, done.returncode if done.returncode > 100 else None, produced


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_reference_decoder(name: str, tmp_path: Path, reference_shadow: Path) -> None:
    argv = _materialise(CASES[name], tmp_path)
    ours = _outcome([sys.executable, str(DECODER)], argv, tmp_path / "ours", "")
    script = reference_shadow / "lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
    theirs = _outcome([sys.executable, str(script)], argv, tmp_path / "theirs", str(reference_shadow))
    assert ours == theirs
    assert ours[2].get("out") or name == "unknown_env"


def test_reference_with_its_full_stack(tmp_path: Path, reference_wheel: Path) -> None:
    """One case through the unmodified reference package and its imports."""
    argv = _materialise(CASES["exports_and_files"], tmp_path)
    ours = _outcome([sys.executable, str(DECODER)], argv, tmp_path / "ours", "")
    script = reference_wheel / "lsst/ctrl/bps/panda/edgenode/cmd_line_decoder.py"
    theirs = _outcome([sys.executable, str(script)], argv, tmp_path / "theirs", str(reference_wheel))
    assert ours == theirs
    assert (
        ours[2]["out"][0] == "x y|x y;z|1|1700_5|same value\nrunQgraphFile content\ndatastore: x\nexe n7,n8\n"
    )


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A loopback S3 service reachable from the decoder subprocess."""
    server_module = pytest.importorskip("moto.server")
    from lsst.resources.s3utils import clean_test_environment_for_s3, getS3Client

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with clean_test_environment_for_s3():
            monkeypatch.setenv("S3_ENDPOINT_URL", f"http://{host}:{port}")
            getS3Client().create_bucket(Bucket="dist")
            yield "s3://dist/run1/"
    finally:
        server.stop()


def test_s3_distribution_round_trip(job: Job, s3_endpoint: str, tmp_path: Path) -> None:
    """Submit side stages to S3, the decoder copies back into the job dir."""
    _write_tree(tmp_path / "src", {"job.qgraph": "QG", "repo/butler.yaml": "b", "repo/a/b/c.txt": "c"})
    stage_files(
        {"job.qgraph": str(tmp_path / "src/job.qgraph"), "repo/": str(tmp_path / "src/repo")}, s3_endpoint, 2
    )
    job.files = {"runQgraphFile": "job.qgraph", "butlerConfig": "repo/"}
    argv = job.argv("cat <FILE:runQgraphFile> <FILE:butlerConfig>butler.yaml repo/a/b/c.txt", "j")
    argv[2] = s3_endpoint
    done = job.run(argv)
    assert (done.returncode, done.stdout) == (0, "QGbc"), done.stderr
