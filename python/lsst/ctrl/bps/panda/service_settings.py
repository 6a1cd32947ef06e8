# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Settings read once from the BPS configuration.

`ServiceSettings.from_config` is the only place the plugin searches a
`~lsst.ctrl.bps.BpsConfig` (and the environment) during ``prepare``: the
translation itself works from the frozen settings and the attributes
ctrl_bps already set on every `~lsst.ctrl.bps.GenericWorkflowJob`.

Every default lives in ``etc/panda_defaults.yaml``, which BPS merges under
the user's configuration (and which is read directly for a configuration
built without it). A missing required key or an invalid value is reported
as a `PanDAConfigError` naming the key.
"""

from __future__ import annotations

__all__ = [
    "CUSTOM_JOB_ENDPOINT",
    "RELAY_TIMEOUT_KEYS",
    "LabelSettings",
    "RelayTimeouts",
    "ServiceSettings",
    "TaskSettings",
    "max_name_length",
    "normalise_endpoint",
    "relay_timeouts",
]

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from .command_line import shell_unsafe
from .constants import CMD_LINE_TOKEN, DEFAULTS_URI, IDDS_MAX_NAME_LENGTH_DEFAULT
from .event_service import EventServiceSettings, WorkEventService
from .exceptions import PanDAConfigError

_LOG = logging.getLogger(__name__)

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z\d+\-.]*://")
_SCHEME_PREFIX = re.compile(r"^([a-zA-Z][a-zA-Z\d+\-.]*):")
_TEMP_SPACE = "LSST_RUN_TEMP_SPACE"

CUSTOM_JOB_ENDPOINT = "FileDistribution"
"""Distribution field of custom jobs without a usable endpoint (as before)."""
_RAW = {"replaceEnvVars": False, "expandEnvVars": False}
_MAX_NAME_ENV = "IDDS_MAX_NAME_LENGTH"
_LABEL_KEYS = ("processingType", "taskType", "prodSourceLabel", "vo")


def normalise_endpoint(endpoint: str) -> str:
    """Return a distribution endpoint as an absolute URI ending in ``/``.

    Parameters
    ----------
    endpoint : `str`
        Bare path (absolute, relative or ``~``-prefixed) or URI.

    Returns
    -------
    uri : `str`
        A bare path made absolute with ``file://`` added (``file:/path``
        and ``file://localhost/path`` become ``file:///path``), then a
        trailing slash if missing.

    Raises
    ------
    ValueError
        Raised if it cannot name one directory every job reaches: a
        ``file://`` URI with a host (``file://dist/`` is a relative path
        read as host ``dist``), ``file:`` with a relative path, another
        scheme without ``//`` or without a host or bucket, or a word the
        worker's shell would not take literally.
    """
    scheme = _SCHEME_PREFIX.match(endpoint)
    if scheme is None:
        endpoint = "file://" + os.path.abspath(os.path.expanduser(endpoint))
    elif scheme.group(1).lower() == "file":
        endpoint = _file_uri(endpoint)
    elif not _SCHEME.match(endpoint) or not urlparse(endpoint).netloc:
        raise ValueError(f"{endpoint!r} is not an absolute URI (expected <scheme>://<host or bucket>/<path>)")
    unsafe = shell_unsafe(endpoint)
    if unsafe:
        raise ValueError(
            f"{endpoint!r} contains {', '.join(map(repr, unsafe))}, which the worker's shell would not "
            "take literally (the endpoint is an unquoted argument of every job's command)"
        )
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _file_uri(endpoint: str) -> str:
    """Return a ``file:`` endpoint as ``file:///<absolute path>``.

    Parameters
    ----------
    endpoint : `str`
        A URI with the ``file`` scheme.

    Returns
    -------
    uri : `str`
        The same directory as ``file:///...``.

    Raises
    ------
    ValueError
        Raised for a host other than ``localhost`` or a relative path.
    """
    parsed = urlparse(endpoint)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(
            f"{endpoint!r} reads as host {parsed.netloc!r}; a file URI needs three slashes and an "
            "absolute path (file:///<absolute path>); a bare path, even relative, is accepted too"
        )
    if not parsed.path.startswith("/"):
        raise ValueError(f"{endpoint!r} has a relative path; use file:///<absolute path> or a bare path")
    return "file://" + parsed.path


def _search(config: Any, key: str, opt: dict[str, Any] | None = None) -> Any:
    """Return a configuration value, or raise naming the key.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    key : `str`
        Key to search.
    opt : `dict`, optional
        BpsConfig search options.

    Returns
    -------
    value : `~typing.Any`
        The value.

    Raises
    ------
    PanDAConfigError
        Raised if the key is absent.
    """
    found, value = config.search(key, opt=dict(opt or {}))
    if found:
        return value
    defaults = _packaged_defaults()
    if key in defaults:  # a config built without the plugin defaults merged
        return defaults[key]
    raise PanDAConfigError(key, "not set, and the plugin has no default for it")


@functools.cache
def _packaged_defaults() -> Mapping[str, Any]:
    """Return the root values of the packaged defaults YAML.

    BPS merges that file into every configuration it builds; this is for
    configurations built without it (e.g. by hand).

    Returns
    -------
    defaults : `~collections.abc.Mapping` [`str`, `~typing.Any`]
        Key to value (sections excluded).
    """
    from lsst.daf.butler import Config

    config = Config(DEFAULTS_URI)
    return MappingProxyType({key: config[key] for key in config if not isinstance(config[key], Config)})


def _typed(config: Any, key: str, kind: type, opt: dict[str, Any] | None = None) -> Any:
    """Return a configuration value converted to a type.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    key : `str`
        Key to search.
    kind : `type`
        `int`, `str`, `bool` or `tuple` (of `str`).
    opt : `dict`, optional
        BpsConfig search options.

    Returns
    -------
    value : `~typing.Any`
        The converted value.

    Raises
    ------
    PanDAConfigError
        Raised if the key is absent or has the wrong type.
    """
    value = _search(config, key, opt)
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is tuple:
            items = [value] if isinstance(value, str) else list(value or [])
            return tuple(str(item) for item in items)
        if kind is int and isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise PanDAConfigError(key, f"{value!r} is not a valid {kind.__name__}") from exc


def _optional(config: Any, key: str, opt: dict[str, Any] | None = None) -> str | None:
    """Return a string value, `None` if absent or empty.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    key : `str`
        Key to search.
    opt : `dict`, optional
        BpsConfig search options.

    Returns
    -------
    value : `str` or `None`
        The value.
    """
    found, value = config.search(key, opt=dict(opt or {}))
    if not found or value is None or value == "":
        return None
    return str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class LabelSettings:
    """PanDA task fields configured per label, not carried by the jobs.

    Parameters
    ----------
    processing_type : `str` or `None`
        ``processingType``.
    task_type : `str`
        ``taskType``.
    prod_source_label : `str`
        ``prodSourceLabel``.
    vo : `str`
        ``vo``.
    """

    processing_type: str | None
    task_type: str
    prod_source_label: str
    vo: str

    @classmethod
    def from_config(cls, config: Any, label: str) -> LabelSettings:
        """Search the values of one label (its section first).

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            The configuration.
        label : `str`
            Job label (pipetask, cluster or special-job section name).

        Returns
        -------
        settings : `LabelSettings`
            The label's values.
        """
        opt = config.get_search_opts(label)
        return cls(
            processing_type=_optional(config, "processingType", opt),
            task_type=_typed(config, "taskType", str, opt),
            prod_source_label=_typed(config, "prodSourceLabel", str, opt),
            vo=_typed(config, "vo", str, opt),
        )


def _label_settings(config: Any, labels: Iterable[str]) -> Mapping[str, LabelSettings]:
    """Read the `LabelSettings` of every label.

    Labels without a section of their own (``pipetask``, ``cluster`` or a
    special-job section) share the root values, read once, unless a root
    value refers to BPS variables (it could then depend on the label).

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.
    labels : `~collections.abc.Iterable` [`str`]
        Job labels.

    Returns
    -------
    settings : `~collections.abc.Mapping` [`str`, `LabelSettings`]
        Label to its settings.
    """
    root = LabelSettings.from_config(config, "")
    raw = [config.search(key, opt={"replaceVars": False})[1] for key in _LABEL_KEYS]
    templated = any("{" in str(value) for value in raw)
    sections = [config[name] for name in ("pipetask", "cluster") if name in config]
    found: dict[str, LabelSettings] = {}
    for label in labels:
        own = label in config or any(label in section for section in sections)
        found[label] = LabelSettings.from_config(config, label) if own or templated else root
    return MappingProxyType(found)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskSettings:
    """The PanDA fields of one task (one `DomaPanDAWork`).

    Built by the generator from the jobs of the task; see
    ``doc/configuration.md`` for the mapping from BPS keys.

    Parameters
    ----------
    site : `str`
        ``task_site`` (``computeSite``).
    cloud : `str` or `None`
        ``task_cloud`` (``computeCloud``).
    queue : `str` or `None`
        ``task_queue`` (``queue``).
    priority : `int`
        ``task_priority``.
    rss : `int`
        ``task_rss`` in MB (``requestMemory``).
    rss_retry_step : `int`
        ``task_rss_retry_step`` in MB.
    rss_retry_offset : `int`
        ``task_rss_retry_offset`` in MB.
    rss_max : `int`
        ``task_rss_max`` in MB (``requestMemoryMax``).
    cores : `int`
        ``core_count`` (``requestCpus``).
    walltime : `int`
        ``maxwalltime`` in seconds (``requestWalltime``, also seconds).
    attempts : `int`
        ``maxattempt`` (``numberOfRetries``).
    working_group : `str` or `None`
        ``working_group`` (``accountingGroup``).
    label : `LabelSettings`
        Per-label fields.
    event_service : `WorkEventService` or `None`
        Event-service fields (``es``, ``es_label``, ``max_events_per_job``,
        ``maxwalltime``), if computed.
    retry_unless_exit : `tuple` [`int`, ...]
        ``retryUnlessExit``: sent as the work attribute
        ``retry_unless_exit`` (the local service honours it, PanDA ignores
        it).
    """

    site: str
    cloud: str | None
    queue: str | None
    priority: int
    rss: int
    rss_retry_step: int
    rss_retry_offset: int
    rss_max: int
    cores: int
    walltime: int
    attempts: int
    working_group: str | None
    label: LabelSettings
    event_service: WorkEventService | None = None
    retry_unless_exit: tuple[int, ...] = ()


def _endpoint(config: Any) -> str:
    """Return the normalised file distribution endpoint.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.

    Returns
    -------
    endpoint : `str`
        URI ending in ``/``.

    Raises
    ------
    PanDAConfigError
        Raised if unset or empty, or if it needs an unset
        ``LSST_RUN_TEMP_SPACE`` and no ``fileDistributionEndPointDefault``.
    """
    key = "fileDistributionEndPoint"
    raw = _optional(config, key, _RAW)
    if raw is None:
        raise PanDAConfigError(key, "required (where submit copies the files jobs need), not set")
    if _TEMP_SPACE in raw and _TEMP_SPACE not in os.environ:
        fallback = _optional(config, "fileDistributionEndPointDefault", _RAW)
        if fallback is None:
            raise PanDAConfigError(key, f"uses {_TEMP_SPACE}, which is unset, and no default is set")
        raw = fallback
    try:
        endpoint = normalise_endpoint(os.path.expandvars(raw))
    except ValueError as exc:
        raise PanDAConfigError(key, str(exc)) from exc
    if endpoint != raw:
        _LOG.debug("%s %r normalised to %s", key, raw, endpoint)
    return endpoint


def _custom_endpoint(config: Any) -> str:
    """Return the endpoint of a custom job, `CUSTOM_JOB_ENDPOINT` if unusable.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.

    Returns
    -------
    endpoint : `str`
        The decoder's distribution field (not used: no file is staged).
    """
    try:
        return _endpoint(config)
    except PanDAConfigError as exc:
        _LOG.debug("Custom job: %s; files come from the PanDA cache", exc)
        return CUSTOM_JOB_ENDPOINT


def _runner_command(config: Any) -> str:
    """Return ``runnerCommand`` on one line, environment variables kept.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.

    Returns
    -------
    command : `str`
        The runner command.

    Raises
    ------
    PanDAConfigError
        Raised if it lacks the ``_cmd_line_`` token.
    """
    key = "runnerCommand"
    command = " ".join(str(_search(config, key, _RAW)).splitlines()).strip()
    if CMD_LINE_TOKEN not in command:
        raise PanDAConfigError(key, f"must contain {CMD_LINE_TOKEN}, got {command!r}")
    return command


def max_name_length() -> int:
    """Return the iDDS name-length limit (``$IDDS_MAX_NAME_LENGTH`` wins).

    Returns
    -------
    limit : `int`
        Maximum length of a pseudo input name.

    Raises
    ------
    PanDAConfigError
        Raised if the environment variable is not a number.
    """
    value = os.environ.get(_MAX_NAME_ENV)
    if value is None:
        return IDDS_MAX_NAME_LENGTH_DEFAULT
    try:
        return int(value)
    except ValueError as exc:
        raise PanDAConfigError(_MAX_NAME_ENV, f"{value!r} is not a number") from exc


def _positive(key: str, value: int) -> int:
    """Check that a number is positive.

    Parameters
    ----------
    key : `str`
        Its key, for the error.
    value : `int`
        The number.

    Returns
    -------
    value : `int`
        The number.

    Raises
    ------
    PanDAConfigError
        Raised if not positive.
    """
    if value <= 0:
        raise PanDAConfigError(key, f"must be positive, got {value}")
    return value


def _event_service(config: Any) -> EventServiceSettings:
    """Read ``enableEventService``, ``maxPayloadsPerPandaJob`` and
    ``maxWmsJobWalltime``.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration.

    Returns
    -------
    settings : `EventServiceSettings`
        The event-service settings.

    Raises
    ------
    PanDAConfigError
        Raised naming the key of an invalid value.
    """
    return EventServiceSettings.from_values(
        _optional(config, "enableEventService"),
        _search(config, "maxPayloadsPerPandaJob"),
        _optional(config, "maxWmsJobWalltime"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything ``prepare`` and ``submit`` need from the configuration.

    Build with `from_config`. Field names follow the BPS keys in snake
    case; ``doc/configuration.md`` documents each key.
    """

    compute_site: str
    compute_cloud: str | None
    file_distribution_endpoint: str
    runner_command: str
    max_jobs_per_task: int
    max_request_length: int
    max_copy_workers: int
    placeholder_params: tuple[str, ...]
    submit_env: Mapping[str, str]
    enable_job_name_map: bool
    order_id_map_filename: str
    enable_qnode_map: bool
    idds_server: str | None
    submit_path: str
    run_name: str
    max_walltime_seconds: int
    max_name_length: int
    priority: int
    request_memory: int
    request_memory_max: int
    request_cpus: int
    number_of_retries: int
    labels: Mapping[str, LabelSettings]
    event_service: EventServiceSettings

    @classmethod
    def from_config(
        cls, config: Any, labels: Iterable[str] = (), custom_job: bool = False
    ) -> ServiceSettings:
        """Read the settings from a BPS configuration.

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            The configuration, plugin defaults merged.
        labels : `~collections.abc.Iterable` [`str`], optional
            Job labels whose `LabelSettings` to read.
        custom_job : `bool`, optional
            A ``bps submitcmd`` run: its files travel through the PanDA
            cache, so an unusable ``fileDistributionEndPoint`` becomes
            `CUSTOM_JOB_ENDPOINT` instead of an error.

        Returns
        -------
        settings : `ServiceSettings`
            The settings.

        Raises
        ------
        PanDAConfigError
            Raised naming the key if a value is missing or invalid.
        """
        compute_site = _optional(config, "computeSite")
        if compute_site is None:
            raise PanDAConfigError("computeSite", "required (the PanDA site to run the jobs at), not set")
        submit_side = _typed(config, "submitSideResolvedParams", tuple)
        event_service = _event_service(config)
        numbers = cls._numbers(config)
        if event_service.enabled and not numbers["enable_job_name_map"]:
            _LOG.info("enableEventService is set: the job-name (order-id) map is switched on")
            numbers["enable_job_name_map"] = True
        return cls(
            compute_site=compute_site,
            compute_cloud=_optional(config, "computeCloud"),
            file_distribution_endpoint=_custom_endpoint(config) if custom_job else _endpoint(config),
            runner_command=_runner_command(config),
            submit_env=MappingProxyType({k: os.environ[k] for k in submit_side if k in os.environ}),
            labels=_label_settings(config, labels),
            max_name_length=max_name_length(),
            event_service=event_service,
            **numbers,
            **cls._strings(config),
        )

    @staticmethod
    def _numbers(config: Any) -> dict[str, Any]:
        """Read the numeric and boolean settings.

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            The configuration.

        Returns
        -------
        values : `dict` [`str`, `~typing.Any`]
            Field name to value.
        """
        positive = {
            "max_jobs_per_task": "maxJobsPerTask",
            "max_request_length": "maxRequestLength",
            "max_copy_workers": "maxCopyWorkers",
            "max_walltime_seconds": "maxWalltimeSeconds",
            "request_memory": "fallbackRequestMemory",
            "request_memory_max": "requestMemoryMax",
            "request_cpus": "fallbackRequestCpus",
        }
        values: dict[str, Any] = {
            field: _positive(key, _typed(config, key, int)) for field, key in positive.items()
        }
        values["priority"] = _typed(config, "priority", int)
        values["number_of_retries"] = _typed(config, "fallbackNumberOfRetries", int)
        values["enable_job_name_map"] = _typed(config, "enableJobNameMap", bool)
        values["enable_qnode_map"] = _typed(config, "enableQnodeMap", bool)
        return values

    @staticmethod
    def _strings(config: Any) -> dict[str, Any]:
        """Read the string and list settings.

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            The configuration.

        Returns
        -------
        values : `dict` [`str`, `~typing.Any`]
            Field name to value.
        """
        submit_path = _optional(config, "submitPath")
        if submit_path is None:
            raise PanDAConfigError("submitPath", "not set (ctrl_bps sets it)")
        found, run_name = config.search("uniqProcName")
        if not found or not run_name:
            raise PanDAConfigError("uniqProcName", "not set (ctrl_bps sets it)")
        return {
            "placeholder_params": _typed(config, "placeholderParams", tuple),
            "order_id_map_filename": os.path.basename(_typed(config, "orderIdMapFilename", str)),
            "idds_server": _optional(config, "iddsServer"),
            "submit_path": os.path.abspath(os.path.expandvars(submit_path)),
            "run_name": str(run_name),
        }

    def label(self, label: str) -> LabelSettings:
        """Return the settings of one label.

        Parameters
        ----------
        label : `str`
            Job label.

        Returns
        -------
        settings : `LabelSettings`
            Its settings.

        Raises
        ------
        PanDAConfigError
            Raised if the label was not read by `from_config`.
        """
        try:
            return self.labels[label]
        except KeyError as exc:
            raise PanDAConfigError("label", f"settings of label {label!r} were not read") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class RelayTimeouts:
    """Bounds of one call to the PanDA relay, in seconds.

    Parameters
    ----------
    connect : `float`
        Waiting for the TCP (and TLS) connection (``relayConnectTimeout``).
    read : `float`
        Waiting for the reply to any command but ``submit``
        (``relayReadTimeout``); also bounds sending the request.
    submit : `float`
        Waiting for the reply to ``submit``, whose request may be hundreds
        of MB (``relaySubmitTimeout``).
    """

    connect: float
    read: float
    submit: float


# Field of RelayTimeouts -> (configuration key, environment variable).
RELAY_TIMEOUT_KEYS = {
    "connect": ("relayConnectTimeout", "CTRL_BPS_PANDA_CONNECT_TIMEOUT"),
    "read": ("relayReadTimeout", "CTRL_BPS_PANDA_READ_TIMEOUT"),
    "submit": ("relaySubmitTimeout", "CTRL_BPS_PANDA_SUBMIT_TIMEOUT"),
}


def relay_timeouts(config: Any = None) -> RelayTimeouts:
    """Read the relay call bounds.

    ``bps report``, ``status``, ``cancel`` and ``restart`` build the
    service from an empty configuration, so each bound is taken from its
    environment variable if set, else from the configuration, else from
    ``etc/panda_defaults.yaml``.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`, optional
        The configuration, if any.

    Returns
    -------
    timeouts : `RelayTimeouts`
        The bounds.

    Raises
    ------
    PanDAConfigError
        Raised naming the variable or key whose value is not a positive
        number of seconds.
    """
    values: dict[str, float] = {}
    for field, (key, variable) in RELAY_TIMEOUT_KEYS.items():
        raw: Any = os.environ.get(variable, "").strip()
        source = variable
        if not raw:
            raw, source = _config_value(config, key), key
        try:
            seconds = float(raw)
        except (TypeError, ValueError) as exc:
            raise PanDAConfigError(source, f"{raw!r} is not a number of seconds") from exc
        if not seconds > 0 or seconds == float("inf"):
            raise PanDAConfigError(source, f"must be a positive number of seconds, got {raw!r}")
        values[field] = seconds
    return RelayTimeouts(**values)


def _config_value(config: Any, key: str) -> Any:
    """Return a root value of a configuration, else its packaged default."""
    if hasattr(config, "search"):
        found, value = config.search(key)
        if found:
            return value
    elif isinstance(config, Mapping) and key in config:
        return config[key]
    return _packaged_defaults()[key]
