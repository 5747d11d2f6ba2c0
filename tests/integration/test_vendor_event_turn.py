"""A fake vendor writing its events to disk (unbuffered) hands them to the OS once per turn of the event loop, for
every request served in that turn, and writes each reply only after that write. Over real sockets: many keep-alive
clients at once, each reply's events are in the file the moment the client has the reply; pipelined requests (a
success, a refused one, a success) are answered in order, and the file holds every request's events in order."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread
from maildrill.harness.clock import MonotonicClock
from maildrill.harness.store import EventWriter

from tests.integration.http_wire import read_reply
from tests.integration.test_vendor_bad_input import good

CLIENTS, REQUESTS = 16, 5


def request(port: int, rcpt: str, body: bytes | None = None) -> bytes:
    ctype, good_body = good("sendgrid", [rcpt])
    body = good_body if body is None else body
    return (f"POST /v3/mail/send HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer SG.k\r\n\r\n").encode() + body


def events(path: Path) -> list[dict]:
    """The events whose lines are whole on disk. Another client's turn may be being written while this reads (a
    reader can see part of a write), so a last line without its newline is not yet an event."""
    text = path.read_bytes()
    whole = text[:text.rfind(b"\n") + 1].decode()
    return [json.loads(line) for line in whole.splitlines()[1:]]


def test_each_reply_is_written_after_its_events_and_pipelined_replies_keep_their_order(tmp_path):
    path = tmp_path / "mta.jsonl"
    writer = EventWriter(path, "mta", MonotonicClock())
    failures: list[str] = []
    with FleetThread(FleetSpec(vendors=[VendorSpec(name="sendgrid", api="sendgrid")]), recorder=writer,
                     control=False) as f:
        port = f["sendgrid"].port

        def client(k: int) -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    buf = b""
                    for i in range(REQUESTS):
                        rcpt = f"u{k:03d}{i:03d}@users.drill.test"
                        s.sendall(request(port, rcpt))
                        reply, buf = read_reply(s, buf)
                        assert reply.status == 202, reply.status
                        on_disk = events(path)  # read the moment the reply is here: its events must be too
                        accepted = [e for e in on_disk if e["kind"] == "mta.message.accepted"
                                    and e["message_id"] == reply.header("X-Message-Id")]
                        assert [e["rcpt"] for e in accepted] == [rcpt], (rcpt, accepted)
                        conn, txn = accepted[0]["conn"], accepted[0]["txn"]
                        replies = [e for e in on_disk if e["kind"] == "mta.reply.sent"
                                   and (e["conn"], e["txn"]) == (conn, txn)]
                        assert [(r["rcpt"], r["http_status"]) for r in replies] == [(rcpt, 202)], replies
            except Exception as exc:  # reported by the test thread
                failures.append(f"client {k}: {exc!r}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert failures == []

        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:  # three requests in one send
            s.sendall(request(port, "p000001@users.drill.test") + request(port, "p000002@users.drill.test", b"{")
                      + request(port, "p000003@users.drill.test"))
            buf = b""
            got = []
            for _ in range(3):
                reply, buf = read_reply(s, buf)
                got.append((reply.status, reply.header("X-Message-Id"), reply.body[:20]))
    writer.close()
    assert [g[0] for g in got] == [202, 400, 202]
    assert got[1][2] == b'{"errors":[{"message'
    recorded = events(path)
    piped = [(e["kind"], e["txn"], e.get("message_id") or e.get("http_status")) for e in recorded  # conn 17
             if e.get("conn") == CLIENTS + 1 and e["kind"] in ("mta.message.accepted", "mta.reply.sent")]
    assert piped == [("mta.message.accepted", 1, got[0][1]), ("mta.reply.sent", 1, 202),
                     ("mta.reply.sent", 2, 400),
                     ("mta.message.accepted", 3, got[2][1]), ("mta.reply.sent", 3, 202)]
    kinds = [e["kind"] for e in recorded]
    assert kinds.count("mta.message.accepted") == CLIENTS * REQUESTS + 2
    assert kinds.count("mta.reply.sent") == CLIENTS * REQUESTS + 3
    pairs = [(e["conn"], e["txn"]) for e in recorded if e["kind"] == "mta.reply.sent"]
    assert sorted(pairs) == sorted({(c, t) for c, t in pairs})  # one reply event per request
    assert sorted(pairs) == [(c, t) for c in range(1, CLIENTS + 2) for t in range(1, (REQUESTS if c <= CLIENTS
                                                                                       else 3) + 1)]
