#!/usr/bin/env python3
# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Worker side of a remote build: build the workflow at the site.

The build job of a remote-build request runs (``remoteBuild.runnerCommand``)::

    python3 build_cmd_line_decoder.py ARCHIVE SUBMIT_FILE [COMPUTE_SITE]

with the argv of the existing plugin's build decoder: ``ARCHIVE`` is the
PanDA cache URL of the ``jobO.*.tar.gz`` holding the submit file and
``remoteBuild.files``, ``SUBMIT_FILE`` the submit file's name in it and
``COMPUTE_SITE`` the optional ``bps submit --compute-site``. The job's
environment carries ``IDDS_BUILD_REQUEST_ID`` and ``IDDS_BUIL_SIGNATURE``
(iDDS's spelling).

It extracts the archive into the working directory, runs ctrl_bps's
``prepare_driver`` there (quantum graph, transform, prepare with this
plugin), stages the jobs' files to the distribution endpoint and sends the
workflow into the build request with ``update_build_request`` (its steps
first when it is longer than ``maxRequestLength``, as a normal submit).
Exit codes: 0 on success; the code of a failed ``bps`` subprocess
(``128 + n`` when negative); `EXIT_USAGE` for bad arguments or a missing
variable; 1 for any other failure, with its message as the last lines of
the log.
"""

from __future__ import annotations

__all__ = ["EXIT_USAGE", "main"]

import datetime
import logging
import os
import re
import sys
import traceback
from typing import Any

from lsst.ctrl.bps.panda.constants import BUILD_REQUEST_VARIABLE, BUILD_SIGNATURE_VARIABLE

EXIT_USAGE = 64
"""Exit code for wrong arguments or a missing environment variable."""


def _build(config_file: str, compute_site: str | None) -> tuple[Any, Any]:
    """Run ctrl_bps's prepare (graph, transform, prepare) here."""
    from lsst.ctrl.bps.drivers import prepare_driver

    kwargs = {"compute_site": compute_site} if compute_site else {}
    return prepare_driver(config_file, **kwargs)


def _send(workflow: Any, request_id: int, signature: str) -> Any:
    """Stage the jobs' files and send the workflow into the build request."""
    from lsst.ctrl.bps.panda.idds_transport import transport_from_config
    from lsst.ctrl.bps.panda.staging import stage_files

    settings = workflow.settings
    if workflow.files_to_stage:
        stage_files(workflow.files_to_stage, workflow.distribution_endpoint, settings.max_copy_workers)
    result = transport_from_config(workflow.config).update_build_request(
        request_id, signature, workflow.request, request_cache=workflow.request_cache
    )
    workflow.record_submission(request_id)
    return result


def _show_subprocess_log(message: str, lines: int = 20) -> None:
    """Print the last lines of the log a failed bps step names, to stderr."""
    match = re.search(r"Check (\S+) for more details", message)
    if match and os.path.isfile(match.group(1)):
        with open(match.group(1), errors="replace") as stream:
            tail = stream.read().splitlines()[-lines:]
        print(f"build_cmd_line_decoder: last lines of {match.group(1)}:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


def _subprocess_code(exc: Any) -> int:
    code = int(getattr(exc, "errno", 1) or 1)
    return 128 + abs(code) if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    """Build the workflow of a build request and send it in.

    Parameters
    ----------
    argv : `list` [`str`], optional
        ``[ARCHIVE, SUBMIT_FILE, COMPUTE_SITE?]`` (default: ``sys.argv[1:]``).

    Returns
    -------
    code : `int`
        The exit code.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print("usage: build_cmd_line_decoder.py ARCHIVE SUBMIT_FILE [COMPUTE_SITE]", file=sys.stderr)
        return EXIT_USAGE
    missing = [
        name for name in (BUILD_REQUEST_VARIABLE, BUILD_SIGNATURE_VARIABLE) if not os.environ.get(name)
    ]
    if missing:
        print(f"build_cmd_line_decoder: {' and '.join(missing)} not set", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")  # fmt: skip
    archive, config_file = args[0], args[1]
    compute_site = args[2] if len(args) > 2 and args[2] else None
    request_id = int(os.environ[BUILD_REQUEST_VARIABLE])
    print(f"build_cmd_line_decoder: start {datetime.datetime.now(datetime.UTC)} request {request_id}")
    print(f"build_cmd_line_decoder: config {config_file}, site {compute_site}, in {os.getcwd()}")
    try:
        from lsst.ctrl.bps import BpsSubprocessError
        from lsst.ctrl.bps.panda.edgenode.utils import download_extract_archive

        download_extract_archive(archive)
        try:
            _, workflow = _build(config_file, compute_site)
        except BpsSubprocessError as exc:
            _show_subprocess_log(str(exc))
            print(f"build_cmd_line_decoder: bps build failed: {exc}", file=sys.stderr)
            return _subprocess_code(exc)
        result = _send(workflow, request_id, os.environ[BUILD_SIGNATURE_VARIABLE])
    except Exception as exc:  # every failure ends the build job with its message last
        traceback.print_exc()
        print(f"build_cmd_line_decoder: remote build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"build_cmd_line_decoder: workflow {workflow.name} sent into request {request_id}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
