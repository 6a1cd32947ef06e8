# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Job command lines: placeholders, hex encoding and ``_cmd_line_``.

The worker runs the edge-node decoder of the LSST stack installed at the
site, so what this module emits follows that decoder's argv exactly
(``doc/command-line.md``)::

    <runnerCommand with _cmd_line_ replaced by>
    <HEX> ${IN/L} <dist>  <k1:v1+k2:v2> <directIO+...|cmdlineplaceholder>

Placeholders in a job's command line:

``{name}``
    Filled at submit from the job's ``cmdvals``, except the names in
    ``placeholderParams``: those stay and travel in the job's pseudo input
    name ``<job>+<name>:<value>+...``, which PanDA puts in ``${IN/L}``.
``<ENV:NAME>``
    Resolved at submit for names in ``submitSideResolvedParams`` that are
    set there, otherwise by the decoder from the worker environment.
``<FILE:key>``
    A file the plugin does not transfer becomes its URI at submit; a
    transferred one becomes its name in the working directory on the
    worker.
``<WMS:attemptNum>``
    Becomes ``<ENV:PanDA_AttemptNr>`` (the pilot's attempt number), which
    every decoder resolves.

This module needs only the standard library and must load from its file
alone (no ``from __future__ import annotations``, which breaks dataclasses
outside `sys.modules`): the edge-node decoder loads it that way for
`decode_hex`.
"""

__all__ = [
    "ATTEMPT_PLACEHOLDER",
    "CommandLineError",
    "CommandTemplate",
    "FileRef",
    "ResolveContext",
    "ResolvedCommand",
    "check_name",
    "check_value",
    "compose_runner_command",
    "decode_hex",
    "encode_hex",
    "export_prefix",
    "files_field",
    "shell_unsafe",
]

import operator
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

if __package__:
    from .constants import CMD_LINE_TOKEN, IN_PLACEHOLDER, NO_DIRECT_IO
else:  # loaded from its file by the edge-node decoder, which needs only decode_hex
    CMD_LINE_TOKEN, IN_PLACEHOLDER, NO_DIRECT_IO = "_cmd_line_", "${IN/L}", "cmdlineplaceholder"

ATTEMPT_PLACEHOLDER = "<ENV:PanDA_AttemptNr>"
"""What ``<WMS:attemptNum>`` becomes: the pilot exports the attempt number."""

ORDER_ID_MAP_TOKEN = "orderIdMapFilename"
"""Token in ``runnerCommand`` replaced by the order-id map URI."""

_VARIABLE = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV = re.compile(r"<ENV:([^<>]+)>")
_FILE = re.compile(r"<FILE:([^<>]+)>")
_WMS = re.compile(r"<WMS:([^<>]+)>")
# Characters a POSIX shell treats specially in an unquoted word. Names and
# values carried in the pseudo input name reach the worker's shell unquoted
# (PanDA substitutes ``${IN/L}`` as text), so they must hold none of these.
SHELL_SPECIAL = "`$;&|<>(){}[]*?!#'\"\\"
"""Characters refused in job names, labels, file names and carried values."""

_SHELL = re.escape(SHELL_SPECIAL)
# One character class, the leading ``~`` tested apart: a ``|^~`` branch makes
# the regex engine try both at every position (1.06 against 0.26 µs on a
# 66-character job name).
_FORBIDDEN_CHAR = re.compile(rf"[+:\s{_SHELL}\x00-\x1f\x7f]")
_UNSAFE = re.compile(rf"[\s{_SHELL}\x00-\x1f\x7f]|^~")
_NO_VALUE = object()


class CommandLineError(ValueError):
    """A job's command line cannot be built in the decoder's format.

    Parameters
    ----------
    job : `str`
        The job at fault.
    detail : `str`
        What is wrong.
    """

    def __init__(self, job: str, detail: str) -> None:
        super().__init__(f"Job {job!r}: {detail}")
        self.job = job
        self.detail = detail


def encode_hex(command: str) -> str:
    """Encode a command line as lower-case hex of its UTF-8 bytes.

    Parameters
    ----------
    command : `str`
        The command line.

    Returns
    -------
    encoded : `str`
        Hex digits, safe as one shell word.
    """
    return command.encode("utf-8").hex()


def decode_hex(encoded: str) -> str:
    """Decode a command line encoded by `encode_hex`.

    Parameters
    ----------
    encoded : `str`
        Hex digits.

    Returns
    -------
    command : `str`
        The command line.
    """
    return bytes.fromhex(encoded).decode("utf-8")


def check_name(job: str, what: str, value: str) -> str:
    """Check a name the decoder splits on ``+`` and ``:``.

    Parameters
    ----------
    job : `str`
        Job name, for the error.
    what : `str`
        What the name is, for the error.
    value : `str`
        The name.

    Returns
    -------
    value : `str`
        The name.

    Raises
    ------
    CommandLineError
        Raised if it is empty, contains ``+``, ``:``, whitespace, a control
        character or a shell metacharacter (`SHELL_SPECIAL`), or starts
        with ``~``: the name reaches the worker's shell unquoted.
    """
    if not value:
        raise CommandLineError(job, f"{what} must not be empty")
    if _FORBIDDEN_CHAR.search(value) or value.startswith("~"):
        raise CommandLineError(job, f"{what} {value!r} {_refusal(value, '+:')}")
    return value


def check_value(job: str, what: str, value: str) -> str:
    """Check a placeholder value carried in a pseudo input name.

    Parameters
    ----------
    job : `str`
        Job name, for the error.
    what : `str`
        What the value is, for the error.
    value : `str`
        The value (may be empty).

    Returns
    -------
    value : `str`
        The value.

    Raises
    ------
    CommandLineError
        Raised if it contains ``+``, ``:``, whitespace, a control character
        or a shell metacharacter, or starts with ``~`` (the decoder splits
        on the first two, the value reaches the worker's shell unquoted in
        the pseudo input name, and the decoder substitutes it as is into
        the command, possibly inside quotes).
    """
    if _FORBIDDEN_CHAR.search(value) or value.startswith("~"):
        raise CommandLineError(job, f"{what} {value!r} {_refusal(value, '+:')}")
    return value


def shell_unsafe(value: str) -> str:
    """Return the characters of a word a shell would not take literally.

    Parameters
    ----------
    value : `str`
        A word placed unquoted in the worker's command (a name, a value,
        the distribution endpoint).

    Returns
    -------
    unsafe : `str`
        The offending characters, each once, in order (a leading ``~``
        included); empty if the word is safe.
    """
    found = dict.fromkeys(match.group() for match in _UNSAFE.finditer(value))
    return "".join(found)


def _refusal(value: str, separators: str) -> str:
    """Say which characters of a refused name or value are at fault."""
    bad = dict.fromkeys(char for char in value if char in separators)
    bad.update(dict.fromkeys(shell_unsafe(value)))
    shown = ", ".join(repr(char) for char in bad)
    return (
        f"contains {shown}; names and carried values reach the worker's shell unquoted and may not "
        f"hold '+', ':', whitespace, control characters, any of {SHELL_SPECIAL} or a leading '~'"
    )


def export_prefix(environment: Mapping[str, str]) -> str:
    """Return shell exports of an environment, values quoted.

    Parameters
    ----------
    environment : `~collections.abc.Mapping` [`str`, `str`]
        Variable name to value (placeholders already resolved or kept).

    Returns
    -------
    prefix : `str`
        ``export K='v'; `` per variable, in order.
    """
    return "".join(f"export {key}={shlex.quote(value)}; " for key, value in environment.items())


def files_field(files: Mapping[str, str]) -> str:
    """Return the decoder's files field.

    Parameters
    ----------
    files : `~collections.abc.Mapping` [`str`, `str`]
        Files key to name relative to the distribution endpoint
        (directories end in ``/``).

    Returns
    -------
    field : `str`
        ``k1:v1+k2:v2``; the site decoder needs a non-empty field, so no
        files gives ``cmdlineplaceholder:cmdlineplaceholder``, a key the
        direct-IO field then skips.
    """
    if not files:
        return f"{NO_DIRECT_IO}:{NO_DIRECT_IO}"
    return "+".join(f"{key}:{name}" for key, name in files.items())


def compose_runner_command(
    runner_command: str, encoded: str, distribution: str, files: str, direct_io: str
) -> str:
    """Put a job's encoded command into ``runnerCommand``.

    Parameters
    ----------
    runner_command : `str`
        The runner command, containing ``_cmd_line_``.
    encoded : `str`
        Hex of the job command line.
    distribution : `str`
        Distribution endpoint URI.
    files : `str`
        The files field (`files_field`).
    direct_io : `str`
        ``+``-joined files keys read in place, or ``cmdlineplaceholder``.

    Returns
    -------
    command : `str`
        The runner command with the five decoder arguments in place.
    """
    arguments = f"{encoded} {IN_PLACEHOLDER} {distribution}  {files} {direct_io or NO_DIRECT_IO}"
    return runner_command.replace(CMD_LINE_TOKEN, arguments)


@dataclass(frozen=True, slots=True)
class ResolvedCommand:
    """A job command line after every submit-side substitution.

    Parameters
    ----------
    text : `str`
        The command line (lazy placeholders kept).
    lazy : `tuple` [`str`, ...]
        ``placeholderParams`` names it still contains.
    worker_files : `tuple` [`str`, ...]
        ``<FILE:key>`` keys left for the worker.
    """

    text: str
    lazy: tuple[str, ...]
    worker_files: tuple[str, ...]
    segments: tuple[str, ...] = ()

    @classmethod
    def build(cls, text: str, placeholder_params: Iterable[str], worker_files: tuple[str, ...]) -> Self:
        """Make a resolved command, finding the lazy names it contains.

        Parameters
        ----------
        text : `str`
            The command line.
        placeholder_params : `~collections.abc.Iterable` [`str`]
            ``placeholderParams``, in order.
        worker_files : `tuple` [`str`, ...]
            ``<FILE:key>`` keys left for the worker.

        Returns
        -------
        command : `ResolvedCommand`
            The command.
        """
        present = set(_VARIABLE.findall(text))
        lazy: list[str] = []
        segments = [""]
        for name in placeholder_params:
            segments[-1] += f"+{name}:"
            if name in present:
                lazy.append(name)
                segments.append("")
        return cls(text, tuple(lazy), worker_files, tuple(segments))

    def pseudo_name(self, job: str, base: str, cmdvals: Mapping[str, Any]) -> str:
        """Return a job's pseudo input name carrying its lazy values.

        Parameters
        ----------
        job : `str`
            Job name, for errors.
        base : `str`
            Start of the name (the job name).
        cmdvals : `~collections.abc.Mapping` [`str`, `~typing.Any`]
            The job's command values.

        Returns
        -------
        name : `str`
            ``<base>+<k1>:<v1>+<k2>:<v2>...`` with one item per
            ``placeholderParams`` entry, values empty for names the command
            does not use.

        Raises
        ------
        CommandLineError
            Raised if a used name has no value or a value the decoder cannot
            carry.
        """
        segments = self.segments
        if len(segments) == 2:  # one lazy name: the usual case (qgraphNodeId)
            value = cmdvals.get(self.lazy[0], _NO_VALUE)
            if isinstance(value, str) and not (_FORBIDDEN_CHAR.search(value) or value.startswith("~")):
                return base + segments[0] + value + segments[1]
        parts = [base, segments[0]]
        for index, name in enumerate(self.lazy, 1):
            if name not in cmdvals:
                raise CommandLineError(job, f"{{{name}}} is in the command line but has no value")
            value = str(cmdvals[name])
            if _FORBIDDEN_CHAR.search(value) or value.startswith("~"):
                check_value(job, f"value of {name}", value)
            parts.append(value)
            parts.append(segments[index])
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class FileRef:
    """What the command line needs to know about a job file.

    Parameters
    ----------
    submit_value : `str` or `None`
        Replacement at submit (URI or name), or `None` to leave
        ``<FILE:key>`` for the worker.
    """

    submit_value: str | None


@dataclass(frozen=True, slots=True)
class ResolveContext:
    """Submit-side facts a command line is resolved with.

    Parameters
    ----------
    job : `str`
        Job name, for errors.
    submit_env : `~collections.abc.Mapping` [`str`, `str`]
        ``<ENV:NAME>`` values resolved at submit.
    files : `~collections.abc.Mapping` [`str`, `FileRef`]
        The job's input and output files by key.
    files_key : `~typing.Any`
        Hashable identity of ``files`` (for the cache).
    """

    job: str
    submit_env: Mapping[str, str]
    files: Mapping[str, FileRef]
    files_key: Any


@dataclass(slots=True)
class CommandTemplate:
    """The command line shared by jobs with the same executable, arguments
    and environment, ready to be filled with each job's ``cmdvals``.

    Parameters
    ----------
    executable : `str`
        ``./<name>`` of a transferred executable, else its URI.
    arguments : `str`
        Arguments as ctrl_bps left them.
    environment : `~collections.abc.Mapping` [`str`, `str`]
        Variables to export.
    placeholder_params : `tuple` [`str`, ...]
        Names left for the worker.
    """

    executable: str
    arguments: str
    environment: Mapping[str, str]
    placeholder_params: tuple[str, ...]
    variables: tuple[str, ...] = field(init=False)
    _getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False)
    _cache: dict[tuple[Any, ...], ResolvedCommand] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        lazy = set(self.placeholder_params)
        texts = [self.executable, self.arguments, *self.environment.values()]
        found = dict.fromkeys(name for text in texts for name in _VARIABLE.findall(text))
        self.variables = tuple(name for name in found if name not in lazy)
        if len(self.variables) > 1:
            self._getter = operator.itemgetter(*self.variables)
        elif self.variables:
            single = self.variables[0]
            self._getter = lambda cmdvals: (cmdvals[single],)
        else:
            self._getter = lambda cmdvals: ()

    def values(self, cmdvals: Mapping[str, Any]) -> tuple[Any, ...]:
        """Return the values this template needs from a job's ``cmdvals``.

        Parameters
        ----------
        cmdvals : `~collections.abc.Mapping` [`str`, `~typing.Any`]
            The job's command values.

        Returns
        -------
        values : `tuple`
            Values of `variables`, in order.

        Raises
        ------
        KeyError
            Raised with the name if a variable has no value.
        """
        return self._getter(cmdvals)

    def cached(self, values: tuple[Any, ...], files_key: Any) -> ResolvedCommand | None:
        """Return the command already resolved for these values, if any.

        Parameters
        ----------
        values : `tuple`
            Values of `variables` (from `values`).
        files_key : `~typing.Any`
            Identity of the job's files (`ResolveContext.files_key`).

        Returns
        -------
        command : `ResolvedCommand` or `None`
            The cached command.
        """
        return self._cache.get((values, files_key))

    def resolve(self, values: tuple[Any, ...], context: ResolveContext) -> ResolvedCommand:
        """Return the command line for the given variable values.

        Results are cached: jobs sharing the values share the command.

        Parameters
        ----------
        values : `tuple`
            Values of `variables` (from `values`).
        context : `ResolveContext`
            Submit-side environment and the job's files.

        Returns
        -------
        command : `ResolvedCommand`
            The command line.

        Raises
        ------
        CommandLineError
            Raised if a file or ``<WMS:>`` placeholder is unknown.
        """
        key = (values, context.files_key)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._resolve(dict(zip(self.variables, values, strict=True)), context)
        return cached

    def _resolve(self, values: dict[str, Any], context: ResolveContext) -> ResolvedCommand:
        """Build the command line (uncached `resolve`)."""

        def fill(text: str) -> str:
            return _VARIABLE.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], text)

        environment = {key: fill(str(value)) for key, value in self.environment.items()}
        text = export_prefix(environment) + fill(self.executable)
        if self.arguments:
            text += " " + fill(self.arguments)
        text = _WMS.sub(lambda m: _wms(context.job, m[1]), text)
        text = _ENV.sub(lambda m: context.submit_env.get(m[1], m[0]), text)
        worker_files: dict[str, None] = {}
        text = _FILE.sub(lambda m: _file(context, m[1], m[0], worker_files), text)
        return ResolvedCommand.build(text, self.placeholder_params, tuple(worker_files))


def _wms(job: str, name: str) -> str:
    """Return the replacement of a ``<WMS:name>`` placeholder.

    Parameters
    ----------
    job : `str`
        Job name, for the error.
    name : `str`
        Placeholder name.

    Returns
    -------
    value : `str`
        `ATTEMPT_PLACEHOLDER` for ``attemptNum``.

    Raises
    ------
    CommandLineError
        Raised for any other name.
    """
    if name == "attemptNum":
        return ATTEMPT_PLACEHOLDER
    raise CommandLineError(job, f"unknown placeholder <WMS:{name}> (PanDA provides only attemptNum)")


def _file(context: ResolveContext, key: str, original: str, worker_files: dict[str, None]) -> str:
    """Return the replacement of a ``<FILE:key>`` placeholder.

    Parameters
    ----------
    context : `ResolveContext`
        The job's files.
    key : `str`
        File key.
    original : `str`
        The placeholder text.
    worker_files : `dict` [`str`, `None`]
        Keys left for the worker, updated in place.

    Returns
    -------
    value : `str`
        The submit-side value, or the placeholder itself.

    Raises
    ------
    CommandLineError
        Raised if the job has no such file.
    """
    ref = context.files.get(key)
    if ref is None:
        raise CommandLineError(context.job, f"<FILE:{key}> names no input or output file of the job")
    if ref.submit_value is not None:
        return ref.submit_value
    worker_files[key] = None
    return original
