#!/usr/bin/env python3
# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Worker-side decoder of PanDA job command lines.

Every job runs::

    python3 -m lsst.ctrl.bps.panda.edgenode.cmd_line_decoder \
        HEX IN DIST FILES DIRECTIO

(or this file by path) with the argv of the site decoder shipped in LSST
stacks:

``HEX``
    Hex of the UTF-8 job command line.
``IN``
    The job's pseudo input name, filled in by PanDA from ``${IN/L}``:
    ``<job>+<key>:<value>+...``, or ``PH:<job>`` (qnode map), or
    ``<label>:orderIdMap_<n>`` / ``<label>:eventservice_<base>^<n>`` (order
    id map).
``DIST``
    The file distribution endpoint.
``FILES``
    ``<key>:<name>+...``: files to copy from ``DIST`` into the working
    directory; a name ending in ``/`` is a directory.
``DIRECTIO``
    ``+``-joined keys of ``FILES`` read in place (not copied), or
    ``cmdlineplaceholder``; or the URL of a ``jobO.*.tar.gz`` archive that
    holds the files instead.

The decoder copies the files, resolves ``<ENV:X>``, ``<WMS:attemptNum>``,
``<FILE:key>`` and ``{key}`` placeholders, runs the command with bash in the
working directory, streams its output and exits with its exit code
(``128 + signal`` when a signal killed it). Its own failures exit with
`EXIT_USAGE`, `EXIT_DATA` or `EXIT_NO_INPUT` and a message on stderr.

This module needs only the standard library (plus `lsst.resources`, when
present, for remote endpoints) so that it runs on workers without
``lsst.ctrl.bps``.
"""

from __future__ import annotations

__all__ = [
    "ATTEMPT_VARIABLE",
    "EXIT_DATA",
    "EXIT_NO_INPUT",
    "EXIT_USAGE",
    "DecoderError",
    "JobArguments",
    "main",
    "resolve_command",
]

import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_USAGE = 64
"""Exit code for a wrong number of arguments."""

EXIT_DATA = 65
"""Exit code for bad hex, an unresolvable placeholder or a bad parameter."""

EXIT_NO_INPUT = 66
"""Exit code for a file that cannot be delivered to the working directory."""

ATTEMPT_VARIABLE = "PanDA_AttemptNr"
"""Environment variable in which the PanDA pilot passes the attempt number."""

NO_DIRECT_IO = "cmdlineplaceholder"
"""Direct-IO field value when every file is copied."""

ORDER_ID_MAP_KEY = "orderIdMapFilename"
"""Files key of the order id map (copied only if absent)."""

QNODE_MAP_FILE = "qnode_map.json"
"""File mapping ``PH:<job>`` to the full pseudo input name."""

_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_ENV_PATTERN = re.compile(r"<ENV:([^<>]*)>")
_WMS_PATTERN = re.compile(r"<WMS:([^<>]*)>")
_FILE_PATTERN = re.compile(r"<FILE:([^<>]*)>")
_ORDER_PATTERN = re.compile(
    r"^(?P<label>[^:]+):(?:orderIdMap_(?P<order>\d+)|eventservice_(?P<base>\d+)\^(?P<n>\d+))"
)


@functools.cache
def _resource_path_class() -> Any:
    """Return `lsst.resources.ResourcePath`, or `None` if not installed.

    Imported on first use: jobs without files do not pay for it.

    Returns
    -------
    cls : `type` or `None`
        The class.
    """
    try:
        from lsst.resources import ResourcePath
    except ImportError:  # a worker without lsst.resources reads local endpoints
        return None
    return ResourcePath


class DecoderError(Exception):
    """The job cannot be started.

    Parameters
    ----------
    message : `str`
        What went wrong.
    exit_code : `int`
        Exit code of the decoder.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load_decode_hex() -> Callable[[str], str]:
    """Return ``command_line.decode_hex`` without importing ``lsst.ctrl.bps``.

    ``command_line.py`` is standard library only, so it is loaded from its
    file: importing it through the package would pull in ``lsst.ctrl.bps``
    (seconds per job, and absent on some workers). The package import is
    the fallback if the file cannot be loaded on its own.

    Returns
    -------
    decode_hex : `~collections.abc.Callable`
        The decoder of the submit side's hex encoding.
    """
    loaded = sys.modules.get("lsst.ctrl.bps.panda.command_line")
    if loaded is not None:
        return loaded.decode_hex
    path = Path(__file__).resolve().parents[1] / "command_line.py"
    spec = importlib.util.spec_from_file_location("_ctrl_bps_panda_command_line", path)
    try:
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.decode_hex
    except (ImportError, OSError):
        from lsst.ctrl.bps.panda.command_line import decode_hex

        return decode_hex


def _split_pairs(field: str, what: str) -> dict[str, str]:
    """Split ``k1:v1+k2:v2`` into a dict (values may contain ``:``).

    Parameters
    ----------
    field : `str`
        The field.
    what : `str`
        Name of the field for error messages.

    Returns
    -------
    pairs : `dict` [`str`, `str`]
        Key to value.

    Raises
    ------
    DecoderError
        Raised if an item has no ``:``.
    """
    pairs: dict[str, str] = {}
    for item in filter(None, field.split("+")):
        key, sep, value = item.partition(":")
        if not sep:
            raise DecoderError(f"{what} item {item!r} is not of the form key:value", EXIT_DATA)
        pairs[key] = value
    return pairs


@dataclass(frozen=True)
class JobArguments:
    """The five arguments of the decoder.

    Parameters
    ----------
    encoded : `str`
        Hex of the command line.
    params : `str`
        The pseudo input name.
    distribution : `str`
        The file distribution endpoint.
    files : `dict` [`str`, `str`]
        Files key to name relative to the endpoint.
    direct_io : `str`
        Direct-IO field.
    """

    encoded: str
    params: str
    distribution: str
    files: dict[str, str]
    direct_io: str

    @classmethod
    def from_argv(cls, argv: list[str]) -> JobArguments:
        """Parse the decoder's arguments.

        Parameters
        ----------
        argv : `list` [`str`]
            Arguments without the program name.

        Returns
        -------
        arguments : `JobArguments`
            The parsed arguments.

        Raises
        ------
        DecoderError
            Raised on a wrong argument count or a malformed files field.
        """
        if len(argv) != 5:
            raise DecoderError(
                f"expected 5 arguments (HEX IN DIST FILES DIRECTIO), got {len(argv)}", EXIT_USAGE
            )
        return cls(argv[0], argv[1], argv[2], _split_pairs(argv[3], "FILES"), argv[4])

    @property
    def skipped(self) -> set[str]:
        """Files keys read in place (`set` [`str`])."""
        return set(self.direct_io.split("+"))

    @property
    def archive(self) -> str | None:
        """URL of the job archive replacing the files, or `None`."""
        return self.direct_io if "jobO" in self.direct_io else None


def _is_local(uri: str) -> bool:
    """Return whether a URI is a local path.

    Parameters
    ----------
    uri : `str`
        Bare path or URI.

    Returns
    -------
    local : `bool`
        `True` for bare paths and ``file://`` URIs.
    """
    return urllib.parse.urlparse(uri).scheme in ("", "file")


def _local_path(uri: str) -> str:
    """Return the file system path of a local URI.

    Parameters
    ----------
    uri : `str`
        Bare path or ``file://`` URI.

    Returns
    -------
    path : `str`
        The path.
    """
    parsed = urllib.parse.urlparse(uri)
    return urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri


def _copy_local(distribution: str, name: str, dest: Path) -> None:
    """Copy a file or directory from a local endpoint with shutil.

    Parameters
    ----------
    distribution : `str`
        Bare path or ``file://`` URI of the endpoint.
    name : `str`
        File or directory name relative to the endpoint.
    dest : `pathlib.Path`
        Destination path.
    """
    source = os.path.join(_local_path(distribution), name)
    if os.path.isdir(source):
        shutil.copytree(source, dest, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)


def _copy_resource(distribution: str, name: str, dest: Path) -> None:
    """Copy a file or directory from any endpoint with `lsst.resources`.

    Parameters
    ----------
    distribution : `str`
        URI of the endpoint.
    name : `str`
        File or directory name relative to the endpoint.
    dest : `pathlib.Path`
        Destination path.
    """
    ResourcePath = _resource_path_class()
    source = ResourcePath(distribution, forceDirectory=True).join(name)
    if not source.isdir():
        ResourcePath(dest).transfer_from(source, transfer="copy", overwrite=True)
        return
    found = list(ResourcePath.findFileResources([source]))
    if not found and not source.exists():
        raise FileNotFoundError(f"directory {source} does not exist")
    for item in found:
        target = ResourcePath(dest, forceDirectory=True).join(item.relative_to(source))
        target.transfer_from(item, transfer="copy", overwrite=True)


def _deliver_one(arguments: JobArguments, key: str, name: str, workdir: Path) -> None:
    """Copy one entry of the files field into the working directory.

    Parameters
    ----------
    arguments : `JobArguments`
        The decoder arguments.
    key : `str`
        Files key.
    name : `str`
        Name relative to the endpoint, and in the working directory.
    workdir : `pathlib.Path`
        The job's working directory.

    Raises
    ------
    DecoderError
        Raised if the copy fails.
    """
    dest = workdir / name.rstrip("/")
    if key == ORDER_ID_MAP_KEY and dest.exists():
        return
    try:
        if _resource_path_class() is not None:
            _copy_resource(arguments.distribution, name, dest)
        elif _is_local(arguments.distribution):
            _copy_local(arguments.distribution, name, dest)
        else:
            raise OSError(f"lsst.resources is needed to read {arguments.distribution}")
    except Exception as exc:  # every backend error means the same: no input
        raise DecoderError(
            f"cannot copy {key}:{name} from {arguments.distribution}: {type(exc).__name__}: {exc}",
            EXIT_NO_INPUT,
        ) from exc
    print(f"cmd_line_decoder: copied {key}:{name} to {dest}", file=sys.stderr)


def _fetch_archive(url: str, workdir: Path) -> None:
    """Download a ``jobO.*.tar.gz`` archive and extract it.

    Parameters
    ----------
    url : `str`
        URL or path of the archive; a bare name is looked up in
        ``$PANDACACHE_URL/cache`` (or ``$PANDA_URL_SSL/cache``).
    workdir : `pathlib.Path`
        Where to extract it.
    """
    if "/" not in url:
        cache = os.environ.get("PANDACACHE_URL") or os.environ.get("PANDA_URL_SSL")
        if not cache:
            raise OSError(f"neither PANDACACHE_URL nor PANDA_URL_SSL is set to fetch {url}")
        url = f"{cache.rstrip('/')}/cache/{url}"
    local = workdir / os.path.basename(urllib.parse.urlparse(url).path)
    if _is_local(url):
        shutil.copyfile(_local_path(url), local)
    elif (ResourcePath := _resource_path_class()) is not None and not url.startswith(("http:", "https:")):
        ResourcePath(local).transfer_from(ResourcePath(url), transfer="copy", overwrite=True)
    else:
        with urllib.request.urlopen(url, timeout=300) as reply, open(local, "wb") as stream:
            shutil.copyfileobj(reply, stream)
    with tarfile.open(local, "r:*") as archive:
        archive.extractall(workdir, filter="data")
    local.unlink()
    print(f"cmd_line_decoder: extracted {url} into {workdir}", file=sys.stderr)


def deliver_files(arguments: JobArguments, workdir: Path) -> None:
    """Bring every file the job needs into its working directory.

    Parameters
    ----------
    arguments : `JobArguments`
        The decoder arguments.
    workdir : `pathlib.Path`
        The job's working directory.

    Raises
    ------
    DecoderError
        Raised if a file cannot be copied.
    """
    if arguments.archive is not None:
        try:
            _fetch_archive(arguments.archive, workdir)
            for name in arguments.files.values():
                os.chmod(workdir / name, 0o755)
        except (OSError, tarfile.TarError) as exc:
            raise DecoderError(
                f"cannot deliver job archive {arguments.archive}: {exc}", EXIT_NO_INPUT
            ) from exc
        return
    skipped = arguments.skipped
    for key, name in arguments.files.items():
        if key not in skipped:
            _deliver_one(arguments, key, name, workdir)
    executable = arguments.files.get("job_executable")
    if executable is not None and "job_executable" not in skipped:
        os.chmod(workdir / executable, 0o755)


def _substitute(
    command: str, pattern: re.Pattern[str], lookup: Callable[[str], str | None], what: str
) -> str:
    """Replace every match of a placeholder pattern.

    Parameters
    ----------
    command : `str`
        The command line.
    pattern : `re.Pattern`
        Placeholder pattern with the name as group 1.
    lookup : `~collections.abc.Callable`
        Value of a name, or `None` if unknown.
    what : `str`
        Kind of placeholder for the error message.

    Returns
    -------
    command : `str`
        The command with the placeholders replaced.

    Raises
    ------
    DecoderError
        Raised, naming all of them, if some names are unknown.
    """
    missing = sorted({name for name in pattern.findall(command) if lookup(name) is None})
    if missing:
        raise DecoderError(f"cannot resolve {what} placeholder(s): {', '.join(missing)}", EXIT_DATA)
    return pattern.sub(lambda match: str(lookup(match.group(1))), command)


def _wms_value(name: str, environ: Mapping[str, str]) -> str | None:
    """Return the value of a ``<WMS:name>`` placeholder.

    Parameters
    ----------
    name : `str`
        Placeholder name; only ``attemptNum`` is known.
    environ : `~collections.abc.Mapping` [`str`, `str`]
        The worker environment.

    Returns
    -------
    value : `str` or `None`
        The value, `None` if unknown.
    """
    return environ.get(ATTEMPT_VARIABLE) if name == "attemptNum" else None


def _load_json(path: Path, what: str) -> Any:
    """Read a JSON map file from the working directory.

    Parameters
    ----------
    path : `pathlib.Path`
        The file.
    what : `str`
        What it is, for the error message.

    Returns
    -------
    content : `typing.Any`
        The parsed JSON.

    Raises
    ------
    DecoderError
        Raised if it is missing or invalid.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError) as exc:
        raise DecoderError(f"cannot read {what} {path}: {exc}", EXIT_NO_INPUT) from exc


def _map_order_ids(command: str, params: str, arguments: JobArguments, workdir: Path) -> tuple[str, str]:
    """Replace order-id and event-service parameters by pseudo names.

    Parameters
    ----------
    command : `str`
        The command line.
    params : `str`
        The pseudo input name field.
    arguments : `JobArguments`
        The decoder arguments (for the map file name).
    workdir : `pathlib.Path`
        The job's working directory.

    Returns
    -------
    command, params : `tuple` [`str`, `str`]
        Both with every mapped parameter replaced.

    Raises
    ------
    DecoderError
        Raised if the map, the label or the index is missing.
    """
    mapped = [(item, match) for item in params.split("+") if (match := _ORDER_PATTERN.match(item))]
    if not mapped:
        return command, params
    map_name = arguments.files.get(ORDER_ID_MAP_KEY)
    if map_name is None:
        raise DecoderError(f"parameter {mapped[0][0]} needs {ORDER_ID_MAP_KEY}, absent from FILES", EXIT_DATA)
    order_map = _load_json(workdir / map_name, "order id map")
    for item, match in mapped:
        label = match["label"]
        index = match["order"] or str(int(match["base"]) + int(match["n"]) - 1)
        pseudo = order_map.get(label, {}).get(index) if isinstance(order_map, dict) else None
        if not isinstance(pseudo, str):
            raise DecoderError(f"order id map has no entry {label}/{index} for {item}", EXIT_DATA)
        command = command.replace(item, pseudo)
        params = params.replace(item, pseudo)
    return command, params


def _lazy_values(params: str, workdir: Path) -> dict[str, str]:
    """Return the ``{key}`` values carried in the pseudo input name.

    Parameters
    ----------
    params : `str`
        ``<job>+<key>:<value>+...`` or ``PH:<job>`` (qnode map).
    workdir : `pathlib.Path`
        The job's working directory (holds the qnode map).

    Returns
    -------
    values : `dict` [`str`, `str`]
        Key to value.

    Raises
    ------
    DecoderError
        Raised if the qnode map lacks the job or an item is malformed.
    """
    items = params.split("+")
    if items[0].startswith("PH:") and items[0].count(":") == 1:
        qnode_map = _load_json(workdir / QNODE_MAP_FILE, "qnode map")
        if not isinstance(qnode_map, dict) or not isinstance(qnode_map.get(items[0]), str):
            raise DecoderError(f"qnode map has no entry {items[0]}", EXIT_DATA)
        items = qnode_map[items[0]].split("+")
    return _split_pairs("+".join(items[1:]), "IN")


def resolve_command(command: str, arguments: JobArguments, workdir: Path, environ: Mapping[str, str]) -> str:
    """Resolve every worker-side placeholder of a decoded command line.

    Parameters
    ----------
    command : `str`
        The decoded command line.
    arguments : `JobArguments`
        The decoder arguments.
    workdir : `pathlib.Path`
        The job's working directory (holds staged map files).
    environ : `~collections.abc.Mapping` [`str`, `str`]
        The worker environment.

    Returns
    -------
    command : `str`
        The command to run.

    Raises
    ------
    DecoderError
        Raised if a placeholder cannot be resolved.
    """
    command = _substitute(command, _ENV_PATTERN, environ.get, "ENV")
    command = _substitute(command, _WMS_PATTERN, lambda name: _wms_value(name, environ), "WMS")
    command, params = _map_order_ids(command, arguments.params, arguments, workdir)
    command = _substitute(command, _FILE_PATTERN, arguments.files.get, "FILE")
    for key, value in _lazy_values(params, workdir).items():
        command = command.replace("{" + key + "}", value)
    return command


def run_payload(command: str, workdir: Path) -> int:
    """Run the command with bash, forwarding signals, and return its code.

    The payload runs in its own process group so that a signal sent to the
    decoder (e.g. by the pilot on a kill) reaches every process the payload
    started.

    Parameters
    ----------
    command : `str`
        The command line.
    workdir : `pathlib.Path`
        Working directory.

    Returns
    -------
    exit_code : `int`
        The payload's exit code, ``128 + signal`` if a signal killed it.
    """
    shell = shutil.which("bash") or "/bin/sh"
    sys.stdout.flush()
    sys.stderr.flush()
    # Handlers go in before the payload starts: a signal arriving between
    # the start and the handlers would otherwise kill the decoder alone and
    # leave the payload running. One arriving before the start is kept
    # and sent once the payload's group exists.
    pending: list[int] = []
    started: list[subprocess.Popen] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if not started:
            pending.append(signum)
            return
        try:
            os.killpg(started[0].pid, signum)
        except ProcessLookupError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED_SIGNALS}
    try:
        started.append(subprocess.Popen([shell, "-c", command], cwd=workdir, process_group=0))
        for signum in pending:
            forward(signum, None)
        code = started[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    """Decode, prepare and run one job.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    exit_code : `int`
        The payload's exit code, or the decoder's error code.
    """
    workdir = Path.cwd()
    try:
        arguments = JobArguments.from_argv(sys.argv[1:] if argv is None else argv)
        try:
            command = _load_decode_hex()(arguments.encoded)
        except ValueError as exc:
            raise DecoderError(f"HEX argument is not hex-encoded UTF-8: {exc}", EXIT_DATA) from exc
        deliver_files(arguments, workdir)
        command = resolve_command(command, arguments, workdir, os.environ)
    except DecoderError as exc:
        print(f"cmd_line_decoder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"cmd_line_decoder: running in {workdir}:\n{command}", file=sys.stderr)
    return run_payload(command, workdir)


if __name__ == "__main__":
    sys.exit(main())
