# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Errors raised by the PanDA plugin.

Every error derives from `PanDABpsError`, itself a
`lsst.ctrl.bps.BpsError`, so ``bps`` prints the message without a traceback.
"""

from __future__ import annotations

__all__ = [
    "AuthConfigError",
    "CacheUploadError",
    "IDDSRequestError",
    "PanDABpsError",
    "PanDAConfigError",
    "PanDAUnreachableError",
    "PandaAuthError",
    "RelayTimeoutError",
    "RunMismatchError",
    "StagingError",
    "SubmissionCheckError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenRefreshError",
    "TokenTooEarlyError",
    "WorkflowTranslationError",
]

import click

from lsst.ctrl.bps import BpsError


class PanDABpsError(BpsError):
    """Base class of every error raised by this package."""


class PanDAConfigError(PanDABpsError):
    """A configuration value is missing or invalid.

    Parameters
    ----------
    key : `str`
        The BPS configuration key at fault.
    detail : `str`
        What is wrong with it.
    """

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"Configuration key '{key}': {detail}")
        self.key = key
        self.detail = detail


class SubmissionCheckError(PanDABpsError, click.ClickException):
    """A check run before ``bps submit`` builds anything failed.

    Also a `click.ClickException`, so the ``bps`` command prints
    ``Error: <message>`` on one line, without a traceback, and exits 1.

    Parameters
    ----------
    message : `str`
        What is wrong and how to fix it.
    """

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, message)


class WorkflowTranslationError(PanDABpsError):
    """A GenericWorkflow cannot be turned into an iDDS workflow."""


class StagingError(PanDABpsError):
    """Files needed by the jobs could not be copied to the endpoint.

    Parameters
    ----------
    failures : `dict` [`str`, `str`]
        Map of source file to the reason its copy failed.
    """

    def __init__(self, failures: dict[str, str]) -> None:
        lines = [f"  {src}: {why}" for src, why in sorted(failures.items())]
        super().__init__(f"{len(failures)} file(s) could not be staged:\n" + "\n".join(lines))
        self.failures = dict(failures)


class CacheUploadError(PanDABpsError):
    """A file could not be uploaded to the PanDA cache.

    Parameters
    ----------
    path : `str`
        The local file.
    detail : `str`
        Why (the server's message, or the size limit).
    """

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"Cannot upload {path} to the PanDA cache: {detail}")
        self.path = path
        self.detail = detail


class IDDSRequestError(PanDABpsError):
    """The PanDA relay or iDDS refused or failed a request.

    Parameters
    ----------
    operation : `str`
        The iDDS ClientManager command, e.g. ``submit`` or ``abort``.
    request_id : `int` or `str` or `None`
        The request the command was about, if any.
    detail : `str`
        The server's message.
    """

    def __init__(self, operation: str, request_id: int | str | None, detail: str) -> None:
        about = f" for request {request_id}" if request_id is not None else ""
        super().__init__(f"iDDS command '{operation}'{about} failed: {detail}")
        self.operation = operation
        self.request_id = request_id
        self.detail = detail


class PanDAUnreachableError(IDDSRequestError):
    """The relay could not be reached, timed out or answered with HTTP 5xx.

    Read-only commands may be retried after this error; ``submit`` never is.
    """


class RunMismatchError(PanDABpsError):
    """A submit directory's run is not the request the server would act on.

    Raised when the run was sent to another relay than the current
    ``PANDA_URL_SSL``, or when the server's request of the recorded id has
    another name than the recorded one.
    """


class RelayTimeoutError(PanDAUnreachableError):
    """The relay did not accept the connection or answer within its bound.

    The detail names the host and port, the bound and the configuration key
    and environment variable setting it. Never retried.
    """


class PandaAuthError(PanDABpsError):
    """Authentication with PanDA failed or cannot be set up."""


class TokenNotFoundError(PandaAuthError):
    """No OIDC token file was found."""


class TokenExpiredError(PandaAuthError):
    """The OIDC token has expired."""


class TokenTooEarlyError(PandaAuthError):
    """The OIDC token does not need a refresh yet."""


class AuthConfigError(PandaAuthError):
    """The auth or OIDC endpoint configuration cannot be fetched or used."""


class TokenRefreshError(PandaAuthError):
    """The identity provider refused or failed to refresh the token."""
