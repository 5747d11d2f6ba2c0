"""The fake vendors answer a request that is all here inside aiohttp's data_received (fake_mta.vendors.base._Handler)
and hand everything else to aiohttp's own loop. Over real sockets, the same script of requests (one at a time,
pipelined with errors among successes, throttled, idempotent replays, tarpitted, HTTP/1.0, Connection: close,
a request cut in two sends, a malformed one) gets the same replies, in the same order, and the same events with
the fast lane as with aiohttp's loop alone; and the fast lane is what served the plain requests."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.recording import MemoryRecorder
from maildrill.fake_mta.testing import FleetThread
from maildrill.fake_mta.vendors import base

from tests.integration.http_wire import read_reply
from tests.integration.test_vendor_bad_input import AUTH, SEND, good

VENDORS = [
    VendorSpec(name="plain", api="sendgrid"),
    VendorSpec(name="limited", api="resend", behaviors=[{"kind": "throttle", "rate_per_s": 0.001, "burst": 3}]),
    VendorSpec(name="slow", api="postmark", behaviors=[{"kind": "tarpit", "delay_s": 0.05}]),
]
API = {v.name: v.api for v in VENDORS}


def request(name: str, port: int, rcpt: str, *, body: bytes | None = None, extra: str = "",
            version: str = "1.1") -> bytes:
    api = API[name]
    ctype, good_body = good(api, [rcpt])
    body = good_body if body is None else body
    head = "".join(f"{k}: {v}\r\n" for k, v in AUTH[api].items())
    return (f"POST {SEND[api]} HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{head}{extra}\r\n").encode() + body


def replies(s: socket.socket, n: int) -> list[tuple[int, bytes, str | None]]:
    """The next `n` replies on `s`: (status, body, Connection header)."""
    out, buf = [], b""
    for _ in range(n):
        reply, buf = read_reply(s, buf)
        body = re.sub(rb'"SubmittedAt":"[^"]*"', b'"SubmittedAt":"-"', reply.body)  # Postmark's: when it was sent
        out.append((reply.status, body, reply.header("Connection")))
    return out


def script(f: FleetThread) -> list[Any]:
    got: list[Any] = []
    plain, limited, slow = (f[n].port for n in ("plain", "limited", "slow"))

    def conn(port: int, data: list[bytes], n: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            for d in data:
                s.sendall(d)
            got.append(replies(s, n))

    with socket.create_connection(("127.0.0.1", plain), timeout=30) as s:  # one at a time on one connection
        for i in range(3):
            s.sendall(request("plain", plain, f"a{i:06d}@users.drill.test"))
            got.append(replies(s, 1))
    conn(plain, [request("plain", plain, "b000001@users.drill.test")  # pipelined, an error in the middle
                 + request("plain", plain, "b000002@users.drill.test", body=b"{")
                 + request("plain", plain, "b000003@users.drill.test")
                 + request("plain", plain, "b000004@users.drill.test")], 4)
    req = request("plain", plain, "c000001@users.drill.test")
    conn(plain, [req[:40], req[40:]], 1)  # a request in two sends
    conn(plain, [request("plain", plain, "d000001@users.drill.test", version="1.0")], 1)
    conn(plain, [request("plain", plain, "e000001@users.drill.test", extra="Connection: close\r\n")], 1)
    conn(plain, [b"GARBAGE / HTTP/1.1\r\n\r\n"], 1)
    idem = "Idempotency-Key: k-1\r\n"
    conn(limited, [request("limited", limited, "h000001@users.drill.test", extra=idem)  # throttled after 3
                   + request("limited", limited, "h000001@users.drill.test", extra=idem)
                   + request("limited", limited, "h000002@users.drill.test")
                   + request("limited", limited, "h000003@users.drill.test")
                   + request("limited", limited, "h000004@users.drill.test")], 5)
    conn(slow, [request("slow", slow, "i000001@users.drill.test")  # tarpitted, pipelined: still in order
                + request("slow", slow, "i000002@users.drill.test")], 2)

    def all_closed(events: list[dict[str, Any]]) -> bool:  # the server has seen each client close, not the stop
        kinds = [e["kind"] for e in events]
        return kinds.count("mta.connection.closed") == kinds.count("mta.connection.opened")

    f.wait_for(all_closed, 30)
    return got


def run(fast: bool) -> tuple[list[Any], list[dict[str, Any]], int]:
    answered_now = 0
    recorder = MemoryRecorder("mta")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "FAST_LANE", fast)
        with FleetThread(FleetSpec(vendors=VENDORS), recorder=recorder, seed=7, control=False) as f:
            for name in API:
                v = f[name]
                answer = v._answer_now

                def counting(*args: Any, _answer: Any = answer) -> bool:
                    nonlocal answered_now
                    done = _answer(*args)
                    answered_now += done
                    return done

                v._answer_now = counting  # type: ignore[method-assign]
            got = script(f)
    events = [{k: v for k, v in e.items() if k not in ("t_s", "port", "peer")} for e in recorder.events]
    # when the server sees a client's close (before the next connection's events, or the fleet's stop) is a race
    closes = ("mta.connection.closed", "mta.listener.closed")
    ordered = [e for e in events if e["kind"] not in closes]
    closed = sorted(repr(sorted(e.items())) for e in events if e["kind"] in closes)
    return got, [*ordered, *closed], answered_now


def test_the_fast_lane_answers_and_records_exactly_what_aiohttps_loop_does() -> None:
    assert base.FAST_LANE, "this aiohttp lacks what the fast lane relies on (see base._HANDLER_NEEDS)"
    fast_replies, fast_events, answered_now = run(True)
    slow_replies, slow_events, answered_slow = run(False)
    statuses = [[status for status, _, _ in r] for r in fast_replies]
    assert statuses == [[202], [202], [202], [202, 400, 202, 202], [202], [202], [202], [400],
                        [200, 200, 200, 429, 429], [200, 200]]
    assert fast_replies == slow_replies
    assert fast_events == slow_events
    assert answered_slow == 0
    # 3 one at a time; the 1st of the pipelined four (the 400 and the ones after it go to aiohttp's loop); the one
    # in two sends; not HTTP/1.0's nor Connection: close's (aiohttp writes a closing reply), nor the garbage;
    # resend's first three (the replay among them; its throttle's 429 and what follows go to aiohttp); no tarpit
    assert answered_now == 3 + 1 + 1 + 3
