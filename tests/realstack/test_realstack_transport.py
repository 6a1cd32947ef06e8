"""Our transport (`PanDARelayTransport`) on the real replies of each relay.

The envelope unwrapping of ``idds_transport`` was written from recorded
replies; here it meets the live ones: results come back unwrapped,
refusals become package errors carrying the server's message.
"""

from __future__ import annotations

from typing import Any

import pytest
from rs_helpers import UNKNOWN_ID, chain_workflow, unique_name
from rs_stack import Backend, RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.timeout(300)]


def transport(backend: Backend, **kwargs: Any) -> Any:
    from lsst.ctrl.bps.panda.idds_transport import PanDARelayTransport, RetryPolicy

    return PanDARelayTransport(backend.idds_server, retry=RetryPolicy(attempts=1), **kwargs)


def test_calls_unwrapped(backend: Backend, tmp_path: Any) -> None:
    relay = transport(backend)
    assert relay.ping() == {"Status": "OK"}
    from lsst.ctrl.bps.panda.request_encoding import encode_workflow

    request = encode_workflow(chain_workflow(unique_name("transport")), 0)
    request_id = relay.submit(request, request_cache=str(tmp_path))
    assert isinstance(request_id, int) and request_id > 0
    rows = relay.get_requests(request_id=request_id, with_detail=True)
    assert rows and all(row["request_id"] in (request_id, None) for row in rows)
    assert relay.get_requests(request_id=UNKNOWN_ID) == []
    assert relay.abort(request_id) == "Command registered successfully"


def test_refusals_raise_with_the_server_message(backend: Backend) -> None:
    from lsst.ctrl.bps.panda.exceptions import IDDSRequestError
    from lsst.ctrl.bps.panda.idds_transport import unwrap_reply

    relay = transport(backend)
    with pytest.raises(IDDSRequestError, match="No match requests"):
        relay.abort(UNKNOWN_ID)
    with pytest.raises(IDDSRequestError, match="No match requests"):
        relay.retry(UNKNOWN_ID)
    reply = backend.api().suspend(request_id=1)
    with pytest.raises(IDDSRequestError, match="suspend is not a command of iDDS ClientManager"):
        unwrap_reply("suspend", 1, reply)


def test_idds_unreachable_behind_the_relay(realstack: RealStack) -> None:
    """The relay is up, the iDDS host it is told to use is not."""
    from lsst.ctrl.bps.panda.exceptions import IDDSRequestError, PanDAUnreachableError

    backend = Backend("real", realstack.client_env(), "http://127.0.0.1:1/idds")
    with backend.active(), pytest.raises(IDDSRequestError, match="Connection") as info:
        transport(backend).ping()
    # the relay answered: this is an iDDS-side failure, not a relay outage
    assert not isinstance(info.value, PanDAUnreachableError)
