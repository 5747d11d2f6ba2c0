"""Bad input over real TCP: the fake MTA answers, records a clear event, keeps serving others, never crashes."""

from __future__ import annotations

import random
import smtplib
import socket
import struct
from typing import Any

import pytest
from maildrill.fake_mta.config import FleetSpec, MTASpec
from maildrill.fake_mta.testing import FleetThread, WireClient

MSG = b"Message-ID: <ok@app.drill.test>\r\n\r\nhello\r\n"


def one(**mta: Any) -> FleetThread:
    return FleetThread(FleetSpec(mtas=[MTASpec(name="m", **mta)]), control=False)


def still_serves(fleet: FleetThread) -> None:
    with smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
        assert client.sendmail("a@app.drill.test", ["ok@users.drill.test"], MSG) == {}
    accepted = [e["corr"] for e in fleet.events(kind="mta.message.accepted")]
    assert accepted == ["ok"]


def test_malformed_command_lines_get_exact_replies_and_protocol_error_events():
    cases = [
        (b"", ["500 5.5.2 Error: bad syntax"], "empty command line"),
        (b"FOO bar", ['500 5.5.2 Error: command "FOO" not recognized'], "unknown command 'FOO'"),
        (b"MAIL FROM:<\xc3\xa9@x.test>", ["500 5.5.2 Error: bad syntax"],
         "non-ASCII command line (SMTPUTF8 not offered)"),
        (b"\xff\xfe", ["500 5.5.2 Error: bad syntax"], "non-ASCII command line (SMTPUTF8 not offered)"),
        (b"NOOP " + b"x" * 600, ["500 5.5.2 Error: command line too long"], "command line too long"),
        (b"HELO " + b"y" * 3000, ["500 5.5.2 Error: command line too long"], "command line too long"),
    ]
    with one() as fleet:
        with WireClient(fleet["m"].port) as c:
            c.reply()
            for line, reply, _ in cases:
                assert c.cmd(line) == reply
            # protocol-level mistakes that are not malformed lines: aiosmtpd's answers, no protocol.error
            assert c.cmd("MAIL FROM:<a@x.test>") == ["503 Error: send HELO first"]
            assert c.cmd("EHLO x")[0] == "250-m.mx.drill.test"
            assert c.cmd("RCPT TO:<u1@users.drill.test>") == ["503 Error: need MAIL command"]
            assert c.cmd("MAIL FROM:<<<not an address") == ["553 5.1.3 Error: malformed address"]
            assert c.cmd("MAIL FROM:<a@x.test> SIZE=99999999999") == [
                "552 Error: message size exceeds fixed maximum message size"]
        errors = [e["error"] for e in fleet.events(kind="mta.protocol.error")]
        lines = [e["line"] for e in fleet.events(kind="mta.protocol.error")]
        still_serves(fleet)
    assert errors == [why for _, _, why in cases]
    assert lines[:4] == ["", "FOO bar", "MAIL FROM:<\\xc3\\xa9@x.test>", "\\xff\\xfe"]
    assert lines[4] == "NOOP " + "x" * 75


def test_ten_thousand_random_byte_lines():
    """20 errors per connection, then `421 4.7.0 Error: too many errors` and close (Postfix's hard limit)."""
    rng = random.Random(1234)
    alphabet = bytes(b for b in range(256) if b not in (10, 13))
    lines = [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(10_000)]
    with one() as fleet:
        port = fleet["m"].port
        for start in range(0, len(lines), 20):
            with WireClient(port) as c:
                assert c.reply()[0].startswith("220 ")
                c.sock.sendall(b"".join(line + b"\r\n" for line in lines[start:start + 20]))
                replies = [c.reply() for _ in range(20)]
                assert [r[0][:3] for r in replies] == ["500"] * 19 + ["421"]
                assert replies[-1] == ["421 4.7.0 Error: too many errors"]
                assert c.closed_by_server()
        still_serves(fleet)
        # the 501st connection is still_serves' own; its close is recorded after the client hung up
        events = fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" for e in evs) >= 501, 30,
                                what="501 connections closed")
    assert sum(e["kind"] == "mta.protocol.error" for e in events) == 10_000
    closed = [e for e in events if e["kind"] == "mta.connection.closed"]
    assert len(closed) == 501
    assert {(e["by"], e["reason"]) for e in closed[:500]} == {("server", "421 4.7.0 reply (RFC 5321 §3.8)")}


def test_oversized_data_is_refused_and_the_connection_stays_usable():
    with one(data_size_limit=1000) as fleet:
        with WireClient(fleet["m"].port) as c:
            c.reply()
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@x.test>")
            c.cmd("RCPT TO:<u1@users.drill.test>")
            assert c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
            big = b"".join(b"%05d " % i + b"z" * 94 + b"\r\n" for i in range(50))  # 5,000 bytes
            assert c.cmd(big + b".") == ["552 5.3.4 Error: message exceeds fixed maximum message size"]
            assert c.cmd("NOOP") == ["250 OK"]
            assert c.cmd("MAIL FROM:<a@x.test>") == ["250 OK"]  # the transaction was reset
            c.cmd("RCPT TO:<u1@users.drill.test>")
            c.cmd("DATA")
            assert c.cmd(b"x" * 2000 + b"\r\n.") == ["500 5.5.2 Error: line too long (RFC 5321 §4.5.3.1.6)"]
        errors = [e["error"] for e in fleet.events(kind="mta.protocol.error")]
        assert fleet.events(kind="mta.message.accepted") == []
    assert errors == ["message larger than data_size_limit (1000 bytes)", "data line too long"]


STEPS: list[tuple[str, bytes | None]] = [
    ("connect", None),
    ("banner", b""),
    ("EHLO", b"EHLO x"),
    ("MAIL", b"MAIL FROM:<a@x.test>"),
    ("RCPT", b"RCPT TO:<u1@users.drill.test>"),
    ("DATA", b"DATA"),
    ("mid-line", b"Subject: half a li"),
    ("before-dot", b"Subject: x\r\n\r\nbody"),
]
REASONS = [
    "client closed the connection after CONNECT",
    "client closed the connection after CONNECT",
    "client closed the connection after EHLO",
    "client closed the connection after MAIL",
    "client closed the connection after RCPT",
    "client closed the connection during DATA",
    "client closed the connection during DATA",
    "client closed the connection during DATA",
]


def _walk(port: int, upto: int, *, reset: bool) -> None:
    c = WireClient(port)
    if reset:  # SO_LINGER 0: close() sends a TCP RST instead of a FIN
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for name, line in STEPS[1:upto + 1]:
        if name == "banner":
            c.reply()
        elif name in ("mid-line", "before-dot"):
            assert line is not None
            c.sock.sendall(line if name == "mid-line" else line + b"\r\n")
        else:
            assert line is not None
            assert c.cmd(line)[0][0] in "23"
    if not reset:
        # A FIN, then read to the server's own close: closing with the banner still unread would make the kernel
        # send an RST instead of a FIN (RFC 1122 §4.2.2.13), so under load step 0 was sometimes a reset
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(30)
        while c.sock.recv(4096):
            pass
    c.close()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_client_that_disconnects_at_every_step(reset: bool):
    with one() as fleet:
        port = fleet["m"].port
        for upto in range(len(STEPS)):
            _walk(port, upto, reset=reset)
            fleet.wait_for(lambda evs, n=upto + 1: sum(e["kind"] == "mta.connection.closed" for e in evs) >= n, 30,
                           what=f"close after step {STEPS[upto][0]}")
        closed = [(e["conn"], e["by"], e["reason"]) for e in fleet.events(kind="mta.connection.closed")]
        still_serves(fleet)
    if not reset:
        assert closed == [(i + 1, "client", why) for i, why in enumerate(REASONS)]
    else:  # an RST is reported as a reset or as a close, depending on what the server was doing
        assert [(conn, by) for conn, by, _ in closed] == [(i + 1, "client") for i in range(len(STEPS))]
        for (_, _, why), expected in zip(closed, REASONS, strict=True):
            where = expected.split("connection ", 1)[1]
            assert why.endswith(where)
            assert why.startswith(("client closed the connection", "connection lost: "))
