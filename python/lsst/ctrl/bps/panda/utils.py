# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Compatibility module: names scripts import from the existing plugin's
``lsst.ctrl.bps.panda.utils``.

Each is a thin wrapper over this package's own module for that concern:

=============================  ==========================================
``get_idds_client``            `idds_transport.transport_from_config`
``get_idds_result``            `idds_transport.unwrap_reply`
``idds_call_with_check``       `idds_transport.unwrap_reply`
``copy_files_for_distribution``  `staging.stage_files`
``convert_exec_string_to_hex``   `command_line.encode_hex`
``download_extract_archive``   `edgenode.utils.download_extract_archive`
=============================  ==========================================

Errors are this package's: `~lsst.ctrl.bps.panda.exceptions.IDDSRequestError`
(``idds_call_with_check``) and `~lsst.ctrl.bps.panda.exceptions.StagingError`
(``copy_files_for_distribution``) instead of `RuntimeError` and
`ExceptionGroup`. The workflow-building helpers of that module
(``add_idds_work``, ``add_decoder_prefix``, ...) are not provided: use
`~lsst.ctrl.bps.panda.PanDAService.prepare`. Imports are lazy, so that the
edge-node decoders importing ``download_extract_archive`` stay light.
"""

from __future__ import annotations

__all__ = [
    "convert_exec_string_to_hex",
    "copy_files_for_distribution",
    "download_extract_archive",
    "get_idds_client",
    "get_idds_result",
    "idds_call_with_check",
]

import os
from collections.abc import Callable
from typing import Any

from .edgenode.utils import download_extract_archive

_NO_PERMISSION = "Authentication no permission"


class _RawIDDSClient:
    """iDDS ClientManager commands returning panda-client's raw replies.

    ``client.get_requests(request_id=1, with_detail=True)`` sends that
    command through the package's transport and returns ``(status,
    payload)`` unchanged, as the existing plugin's client did; read it with
    `get_idds_result`.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __getattr__(self, command: str) -> Callable[..., Any]:
        if command.startswith("_"):
            raise AttributeError(command)

        def call(**kwargs: Any) -> Any:
            return self._transport._raw_call(command, kwargs)

        return call


def get_idds_client(config: Any) -> _RawIDDSClient:
    """Return a client for iDDS commands through the PanDA relay.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`
        Configuration; ``iddsServer`` is used when present.

    Returns
    -------
    client : `object`
        Every ClientManager command as a method returning the raw reply.
    """
    from .idds_transport import transport_from_config

    return _RawIDDSClient(transport_from_config(config))


def get_idds_result(ret: Any) -> tuple[bool, Any, str | None]:
    """Read a raw iDDS reply.

    Parameters
    ----------
    ret : `tuple`
        ``(relay status, (iDDS ok, payload))`` as the client returns it.

    Returns
    -------
    status : `bool`
        Whether the call succeeded.
    result : `~typing.Any`
        The payload, `None` on error.
    error : `str` or `None`
        Why it failed, `None` on success.
    """
    from .exceptions import IDDSRequestError
    from .idds_transport import unwrap_reply

    try:
        result = unwrap_reply("iDDS call", None, ret)
    except IDDSRequestError as exc:
        return False, None, exc.detail
    if isinstance(result, str) and _NO_PERMISSION in result:
        return False, None, result
    return True, result, None


def idds_call_with_check(func: Callable[..., Any], *, func_name: str, request_id: int, **kwargs: Any) -> Any:
    """Call a client command and check the relay status of its reply.

    Parameters
    ----------
    func : `~collections.abc.Callable`
        A command of `get_idds_client`'s client.
    func_name : `str`
        Its name, for messages.
    request_id : `int`
        Passed as ``request_id`` unless `None`.
    **kwargs : `~typing.Any`
        Other arguments of the command.

    Returns
    -------
    ret : `~typing.Any`
        The raw reply.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.IDDSRequestError
        The relay did not deliver the call (with its message).
    """
    from .idds_transport import unwrap_reply

    call_kwargs = dict(kwargs)
    if request_id is not None:
        call_kwargs["request_id"] = request_id
    ret = func(**call_kwargs)
    if not isinstance(ret, list | tuple) or not ret or ret[0] != 0:
        unwrap_reply(func_name, request_id, ret)  # raises with the relay's message
    return ret


def copy_files_for_distribution(
    files_to_stage: dict[str, str], file_distribution_uri: Any, max_copy_workers: int
) -> None:
    """Copy files (or directories) to the distribution endpoint.

    Parameters
    ----------
    files_to_stage : `dict` [`str`, `str`]
        Any key to a local path; each goes to ``<endpoint>/<basename>``
        (a directory's files below ``<endpoint>/<directory name>/``).
    file_distribution_uri : `lsst.resources.ResourcePath` or `str`
        The endpoint.
    max_copy_workers : `int`
        Parallel copies.

    Raises
    ------
    lsst.ctrl.bps.panda.exceptions.StagingError
        After every copy was tried, listing each that failed.
    """
    from .staging import stage_files

    targets = {os.path.basename(os.path.normpath(path)): path for path in files_to_stage.values()}
    stage_files(targets, str(file_distribution_uri), max_copy_workers)


def convert_exec_string_to_hex(cmdline: str) -> str:
    """Encode a command line as the decoder's hex field.

    Parameters
    ----------
    cmdline : `str`
        The command line.

    Returns
    -------
    hex : `str`
        Lower-case hex of its UTF-8 bytes.
    """
    from .command_line import encode_hex

    return encode_hex(cmdline)
