"""go_dark modes over real TCP, and lose_ack's duplicate: stored, no 250, the client retries, the events show two."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from typing import Any

import aiosmtplib
import pytest
from maildrill.fake_mta.config import FleetSpec, MTASpec
from maildrill.fake_mta.testing import FleetThread, WireClient, without_times

MSG = b"Message-ID: <otp-1@app.drill.test>\r\nSubject: code\r\n\r\n123456\r\n"


def one(**mta: Any) -> FleetThread:
    return FleetThread(FleetSpec(mtas=[MTASpec(name="m", **mta)]), control=False)


def start_data(c: WireClient) -> None:
    assert c.reply() == ["220 m.mx.drill.test ESMTP maildrill"]
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@app.drill.test>") == ["250 OK"]
    assert c.cmd("RCPT TO:<u1@users.drill.test>") == ["250 OK"]
    assert c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]


def closes(fleet: FleetThread, n: int = 1) -> list[dict[str, Any]]:
    evs = fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" for e in evs) >= n, 30,
                         what="connection closed")
    return [{k: e[k] for k in ("by", "reason")} for e in evs if e["kind"] == "mta.connection.closed"]


def test_lose_ack_stores_once_per_data_and_the_client_never_sees_250():
    with one(behaviors=[{"kind": "go_dark", "mode": "lose_ack"}]) as fleet, WireClient(fleet["m"].port) as c:
        start_data(c)
        c.send(MSG + b".")
        assert c.reply() == []  # no 250: the server closed
        assert c.closed_by_server()
        evs = fleet.wait_for(lambda evs: evs[-1]["kind"] == "mta.connection.closed", 30, what="close")
    tail = without_times(evs)[-3:]
    assert tail == [
        {"kind": "mta.reply.sent", "corr": "u1", "conn": 1, "txn": 1, "verb": "DATA", "code": 354, "enhanced": None,
         "text": "End data with <CR><LF>.<CR><LF>", "behavior": "default", "closes": False,
         "mail_from": "a@app.drill.test", "rcpt": "u1@users.drill.test", "rcpt_count": 1},
        {"kind": "mta.message.accepted", "corr": "u1", "conn": 1, "txn": 1, "mail_from": "a@app.drill.test",
         "rcpt": "u1@users.drill.test", "size_bytes": len(MSG), "message_id": "otp-1@app.drill.test", "ack": "lost"},
        {"kind": "mta.connection.closed", "corr": None, "conn": 1, "by": "server",
         "reason": "go_dark: message stored, connection closed before the 250"},
    ]


def test_lose_ack_with_a_retrying_client_makes_a_duplicate_the_events_show():
    """The classic duplicate: the first attempt is stored but its 250 is lost; the client retries."""
    with one(behaviors=[{"kind": "go_dark", "mode": "lose_ack", "probability": 1.0}]) as fleet:
        port = fleet["m"].port

        async def send_with_retry() -> list[str]:
            outcomes = []
            for attempt in range(2):
                if attempt == 1:  # the receiver recovers; the client's retry goes through
                    fleet.set_behaviors("m", [])
                try:
                    await aiosmtplib.send(MSG, sender="a@app.drill.test", recipients=["u1@users.drill.test"],
                                          hostname="127.0.0.1", port=port, timeout=10, start_tls=False)
                    outcomes.append("250")
                    break
                except aiosmtplib.SMTPServerDisconnected:
                    outcomes.append("disconnected")
            return outcomes

        assert asyncio.run(send_with_retry()) == ["disconnected", "250"]
        evs = fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" for e in evs) >= 2, 30,
                             what="both connections closed")
    accepted = [(e["corr"], e["conn"], e["message_id"], e["ack"]) for e in evs if e["kind"] == "mta.message.accepted"]
    assert accepted == [("u1", 1, "otp-1@app.drill.test", "lost"), ("u1", 2, "otp-1@app.drill.test", "sent")]
    assert fleet["m"].lookup_message("<otp-1@app.drill.test>") is not None


def test_blackhole_says_250_and_records_a_discard():
    with one(behaviors=[{"kind": "go_dark", "mode": "blackhole"}]) as fleet, \
            smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
        assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
        evs = fleet.events()
    kinds = [e["kind"] for e in evs if e["kind"].startswith("mta.message")]
    discarded = [e for e in without_times(evs) if e["kind"] == "mta.message.discarded"]
    assert kinds == ["mta.message.discarded"]
    assert discarded == [{"kind": "mta.message.discarded", "corr": "u1", "conn": 1, "txn": 1,
                          "mail_from": "a@app.drill.test", "rcpt": "u1@users.drill.test", "size_bytes": len(MSG),
                          "message_id": "otp-1@app.drill.test",
                          "reason": "go_dark: 250 sent, message never delivered"}]
    dot = [(e["code"], e["behavior"]) for e in evs if e["kind"] == "mta.reply.sent" and e["verb"] == "DOT"]
    assert dot == [(250, "go_dark")]


def test_hang_banner_accepts_tcp_and_never_speaks():
    with one(behaviors=[{"kind": "go_dark", "mode": "hang_banner"}]) as fleet:
        with WireClient(fleet["m"].port, timeout_s=0.5) as c, pytest.raises(TimeoutError):
            c.reply()
        assert closes(fleet) == [{"by": "client",
                                  "reason": "client closed the connection while the server hung (go_dark at CONNECT)"}]
        assert fleet.events(kind="mta.reply.sent") == []


def test_hang_data_never_answers_the_final_dot():
    with one(behaviors=[{"kind": "go_dark", "mode": "hang_data"}]) as fleet:
        with WireClient(fleet["m"].port) as c:
            start_data(c)
            c.sock.settimeout(0.5)
            c.send(MSG + b".")
            with pytest.raises(TimeoutError):
                c.reply()
        assert closes(fleet) == [{"by": "client",
                                  "reason": "client closed the connection while the server hung (go_dark at DOT)"}]
        assert fleet.events(kind="mta.message.accepted") == []


def test_drop_mid_data_closes_while_the_client_sends():
    with one(behaviors=[{"kind": "go_dark", "mode": "drop_mid_data"}]) as fleet:
        with WireClient(fleet["m"].port) as c:
            start_data(c)
            c.sock.sendall(b"Subject: x\r\n")
            assert c.closed_by_server()
        assert closes(fleet) == [{"by": "server", "reason": "go_dark: closed the connection during DATA"}]
        assert fleet.events(kind="mta.message.accepted") == []


def test_refuse_closes_listener_and_connections_then_reopens_on_the_same_port():
    with one() as fleet:
        port = fleet["m"].port
        with WireClient(port) as c:
            assert c.reply()[0].startswith("220 ")
            fleet.set_behaviors("m", [{"kind": "go_dark", "mode": "refuse"}])
            assert c.closed_by_server()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        fleet.set_behaviors("m", [])
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.noop() == (250, b"OK")
        listener = [(e["kind"], e["port"], e["reason"]) for e in fleet.events() if e["kind"].startswith("mta.listener")]
    assert listener == [("mta.listener.opened", port, "started"), ("mta.listener.closed", port, "go_dark refuse"),
                        ("mta.listener.opened", port, "behaviors changed")]
    assert {"by": "server", "reason": "go_dark refuse: listener and connections closed"} in closes(fleet)
