"""The fake vendors' fast success path writes the reply as one prebuilt byte string; it must be the reply aiohttp's
own `web.Response` sends for the same answer. Over raw sockets, each vendor's success to a keep-alive HTTP/1.1
request (the prebuilt path) against the same request with `Connection: close` (answered through `web.Response`):
the same status line, the same headers in the same order (bar the Connection header that close adds), the same
body shape, and each request recorded."""

from __future__ import annotations

import json
import socket

import pytest
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread

from tests.integration.http_wire import read_reply
from tests.integration.test_vendor_bad_input import APIS, AUTH, SEND, good

# values that name the message (different for every request) or the moment
PER_REQUEST = {"x-message-id", "x-amzn-requestid", "date", "content-length"}


def exchange(port: int, api: str, rcpt: str, *, close: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    ctype, body = good(api, [rcpt])
    head = [f"POST {SEND[api]} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in AUTH[api].items())]
    if close:
        head.append("Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        reply, _ = read_reply(s, what=api)
    return reply.status_line, reply.headers, reply.body


def shape(value: object) -> object:
    """A JSON value with its strings blanked: ids differ per message, the structure must not."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "" if isinstance(value, str) else value


@pytest.mark.parametrize("api", APIS)
def test_the_prebuilt_success_reply_is_the_reply_aiohttp_would_send(api):
    with FleetThread(FleetSpec(vendors=[VendorSpec(name=api, api=api)]), control=False) as f:
        port = f[api].port
        fast = exchange(port, api, "fast1@users.drill.test", close=False)
        slow = exchange(port, api, "slow1@users.drill.test", close=True)
        accepted = sorted(e["corr"] for e in f.events() if e["kind"] == "mta.message.accepted")
    assert fast[0] == slow[0] and fast[0].startswith("HTTP/1.1 2")
    names = [k for k, _ in fast[1]]
    assert names == [k for k, _ in slow[1] if k.lower() != "connection"]
    assert ("Connection", "close") in slow[1] and "Date" in names and "Server" in names
    assert [(k, v) for k, v in fast[1] if k.lower() not in PER_REQUEST] == \
        [(k, v) for k, v in slow[1] if k.lower() not in PER_REQUEST | {"connection"}]
    if api == "sendgrid":  # 202, no body
        assert fast[2] == slow[2] == b""
    else:
        assert shape(json.loads(fast[2])) == shape(json.loads(slow[2])) != ""
    assert accepted == ["fast1", "slow1"]
