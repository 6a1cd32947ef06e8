# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of the request-body gzip handed to panda-client."""

from __future__ import annotations

import gzip
import io
import json
import types

from lsst.ctrl.bps.panda import request_gzip


def _client_module() -> types.ModuleType:
    """Return a module holding ``gzip`` as ``pandaclient.Client`` does."""
    module = types.ModuleType("fake_client")
    module.gzip = gzip  # type: ignore[attr-defined]
    return module


def _post_body(module: types.ModuleType, data: object) -> bytes:
    """Compress ``data`` as ``pandaclient.Client.post(compress_body=True)``."""
    body_out = io.BytesIO()
    with module.gzip.GzipFile(fileobj=body_out, mode="w") as f_gzip:
        f_gzip.write(json.dumps(data).encode())
    return body_out.getvalue()


def test_body_is_standard_gzip() -> None:
    module = _client_module()
    request_gzip.install(module)
    data = {"workflow": "x" * 10_000, "maps": list(range(1000))}
    body = _post_body(module, data)
    assert json.loads(gzip.decompress(body)) == data


def test_install_is_idempotent_and_keeps_the_rest_of_gzip() -> None:
    module = _client_module()
    request_gzip.install(module)
    stand_in = module.gzip
    request_gzip.install(module)
    assert module.gzip is stand_in
    assert module.gzip.decompress(gzip.compress(b"abc")) == b"abc"


def test_level_changes_the_stream() -> None:
    text = json.dumps([f"job_{i}_{i * 7919 % 1000}" for i in range(5000)])
    sizes = []
    for level in (1, 9):
        module = _client_module()
        request_gzip.install(module, level)
        body = _post_body(module, text)
        assert json.loads(gzip.decompress(body)) == text
        sizes.append(len(body))
    assert sizes[1] < sizes[0]
