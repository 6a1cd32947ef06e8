# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Build requests (remote build) of the local service.

``submit_build`` stores a request whose only work is the build job; the
build job gets ``IDDS_BUILD_REQUEST_ID`` and ``IDDS_BUIL_SIGNATURE`` (sic,
the name iDDS uses) in its environment, builds the workflow and calls
``update_build_request(request_id, signature, workflow)``, which adds the
built workflow's works to the same request. The signature is an HMAC of
the request id keyed by the service's token, so no table stores it.
"""

from __future__ import annotations

__all__ = ["build_signature"]

import functools
import hashlib
import hmac
import json
import os

from .layout import StateLayout


@functools.cache
def _key(state_dir: str) -> bytes:
    with open(StateLayout(state_dir).token_file) as stream:
        return str(json.load(stream)["id_token"]).encode()


def build_signature(state_dir: str, request_id: int) -> str:
    """Return the signature of a build request.

    Parameters
    ----------
    state_dir : `str`
        The service's state directory (its token is the key).
    request_id : `int`
        The build request.

    Returns
    -------
    signature : `str`
        Hex HMAC-SHA256 of the request id.
    """
    key = _key(os.path.abspath(state_dir))
    return hmac.new(key, str(int(request_id)).encode(), hashlib.sha256).hexdigest()
