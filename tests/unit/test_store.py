"""The event store: what is written is read back exactly, in time order, and bad files never raise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from maildrill.harness.clock import FakeClock
from maildrill.harness.errors import WaitTimeout
from maildrill.harness.events import SCHEMA_VERSION, Event
from maildrill.harness.store import EventStore, EventWriter, ReadProblem


def test_events_round_trip_and_merge_in_time_order(tmp_path):
    clock = FakeClock()
    store = EventStore(tmp_path)
    mta = store.writer("mta", "mta/primary", clock)
    load = store.writer("load-1", "load/1", clock)
    mta.record("mta.connection.opened", conn="c1", peer="127.0.0.1")
    clock.advance(0.5)
    load.record("load.request.completed", corr="u1", status=202, ok=True, latency_ms=3.5)
    clock.advance(0.25)
    mta.child("mta/backup").record("mta.message.accepted", corr="u1", size_bytes=120, message_id=None)

    result = store.read()

    assert result.problems == []
    assert result.files == ["load-1.jsonl", "mta.jsonl"]
    assert result.events == [
        Event(0.0, "mta/primary", "mta.connection.opened", None, {"conn": "c1", "peer": "127.0.0.1"}),
        Event(0.5, "load/1", "load.request.completed", "u1", {"status": 202, "ok": True, "latency_ms": 3.5}),
        Event(0.75, "mta/backup", "mta.message.accepted", "u1", {"size_bytes": 120, "message_id": None}),
    ]


def test_each_file_starts_with_a_schema_header(tmp_path):
    with EventWriter(tmp_path / "x.jsonl", "mta/a", FakeClock()) as w:
        w.record("mta.reset", by="api")
    first, second = (tmp_path / "x.jsonl").read_text().splitlines()
    head = json.loads(first)
    assert head["schema"] == "maildrill.events"
    assert head["version"] == SCHEMA_VERSION
    assert head["source"] == "mta/a"
    assert head["pid"] == os.getpid()
    assert json.loads(second) == {"t_s": 0.0, "source": "mta/a", "kind": "mta.reset", "corr": None, "by": "api"}


def test_reopening_a_file_appends_without_a_second_header(tmp_path):
    for i in range(2):
        with EventWriter(tmp_path / "x.jsonl", "s", FakeClock(i)) as w:
            w.record("k", n=i)
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert [e.data["n"] for e in EventStore(tmp_path).events()] == [0, 1]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_read(tmp_path):
    good = EventWriter(tmp_path / "a.jsonl", "s", FakeClock(1.0))
    good.record("k", corr="c1")
    good.close()
    with open(tmp_path / "a.jsonl", "a") as f:
        f.write("garbage here\n")
        f.write('{"t_s": "soon", "source": "s", "kind": "k"}\n')
        f.write('[1, 2]\n')
        f.write('{"t_s": 2.0, "source": "s", "kind": "k", "corr": "c2"}\n')
        f.write('{"t_s": 3.0, "source": "s", "ki')  # writer killed mid-line
    (tmp_path / "b.jsonl").write_text(
        '{"schema": "maildrill.events", "version": 99, "source": "x"}\n{"t_s": 0, "source": "x", "kind": "k"}\n'
    )

    result = EventStore(tmp_path).read()

    assert [(e.t_s, e.corr) for e in result.events] == [(1.0, "c1"), (2.0, "c2")]
    assert result.problems == [
        ReadProblem("a.jsonl", 3, "not JSON; skipped"),
        ReadProblem("a.jsonl", 4, "not an event (t_s must be a number, got 'soon'); skipped"),
        ReadProblem("a.jsonl", 5, "not an event object; skipped"),
        ReadProblem("a.jsonl", 7, "truncated last line (its writer stopped mid-write); skipped"),
        ReadProblem("b.jsonl", 1, "event schema version 99, this maildrill reads version 1; whole file skipped"),
    ]


def test_merged_read_does_not_depend_on_file_order(tmp_path):
    clock = FakeClock()
    writers = [EventStore(tmp_path).writer(f"w{i}", f"s{i}", clock) for i in range(3)]
    for step in range(30):
        clock.advance(0.1 if step % 4 else 0.0)  # some equal timestamps across writers
        writers[step % 3].record("k", corr=f"c{step}")
    forward = EventStore(tmp_path).read(sorted(tmp_path.glob("*.jsonl"))).events
    backward = EventStore(tmp_path).read(sorted(tmp_path.glob("*.jsonl"), reverse=True)).events
    assert forward == backward
    assert [e.t_s for e in forward] == sorted(e.t_s for e in forward)


def test_event_written_before_kill_9_is_readable(tmp_path):
    # The child records one event, then signals readiness and hangs until killed: nothing may be lost.
    code = (
        "import sys, time\n"
        "from maildrill.harness.store import EventStore\n"
        f"w = EventStore({str(tmp_path)!r}).writer('child', 'mta/x')\n"
        "w.record('mta.reply.sent', corr='u1', code=250)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with proc:
        try:
            assert proc.stdout.readline().strip() == "ready"
        finally:
            proc.kill()
            proc.wait(timeout=10)
    events = EventStore(tmp_path).events()
    assert [(e.kind, e.corr, e.data) for e in events] == [("mta.reply.sent", "u1", {"code": 250})]


def test_wait_for_returns_once_the_condition_holds(tmp_path):
    store = EventStore(tmp_path)
    writer = store.writer("w", "s")
    started = threading.Event()

    def produce():
        started.wait(5)
        for i in range(5):
            writer.record("k", corr=f"c{i}")

    t = threading.Thread(target=produce)
    t.start()
    started.set()
    events = store.wait_for(lambda evs: len(evs) >= 5, timeout_s=10, what="five events")
    t.join()
    assert [e.corr for e in events] == ["c0", "c1", "c2", "c3", "c4"]


def test_wait_for_times_out_with_what_it_saw(tmp_path):
    store = EventStore(tmp_path)
    store.writer("w", "s").record("mta.reset")
    with pytest.raises(WaitTimeout) as err:
        store.wait_for(lambda evs: False, timeout_s=0.1, what="a delivery")
    assert str(err.value) == "timed out after 0.1 s waiting for a delivery; saw mta.reset x1"


async def _async_wait(store):
    return await store.wait_for_async(lambda evs: len(evs) == 1, timeout_s=5)


def test_wait_for_async(tmp_path):
    import asyncio

    store = EventStore(tmp_path)
    store.writer("w", "s").record("k", corr="c")
    events = asyncio.run(_async_wait(store))
    assert [e.corr for e in events] == ["c"]


def test_record_many_writes_the_lines_the_stdlib_encoder_writes(tmp_path):
    """The fake vendors' record_many (orjson when it can) writes exactly the line `encode_event` would, and falls back
    to it for what orjson refuses (an int over 64 bits), so every reader sees the same bytes either way."""
    from maildrill.harness.events import encode_event

    clock = FakeClock(12.5)
    path = tmp_path / "v.jsonl"
    w = EventWriter(path, "mta/sendgrid", clock)
    items = [
        ("mta.message.accepted", "000042", {"conn": 3, "txn": 7, "mail_from": "app@app.drill.test",
                                            "rcpt": "u000042+é\u2028\x01\"\\@users.drill.test", "size_bytes": 211,
                                            "message_id": "gLWMWenTKFRRSNJq8W0sZw", "ack": "sent"}),
        ("mta.reply.sent", None, {"conn": 3, "txn": 7, "code": 250, "closes": False, "error_code": None}),
    ]
    items.append(("mta.reset", None, {}))  # no fields: nothing to splice after the fixed four
    big = [("mta.reply.sent", None, {"conn": 2**70, "txn": 1})]
    w.record_many(items)
    w.record_many(big)
    w.close()
    lines = path.read_bytes().split(b"\n")[1:-1]  # after the header line
    want = [encode_event({"t_s": 12.5, "source": "mta/sendgrid", "kind": k, "corr": c, **d}).encode()
            for k, c, d in items + big]
    assert lines == want
    assert json.loads(lines[3])["conn"] == 2**70


def test_a_buffered_writer_writes_the_same_lines_later_in_one_write_and_at_close(tmp_path):
    """flush_ms > 0 (maildrill mta --events-flush-ms): the events wait in memory, then reach the file in record
    order, as the very bytes an unbuffered writer writes: on the event loop's timer, and at close."""
    import asyncio

    from maildrill.polling import poll_until_async

    clock = FakeClock(3.0)

    def record_all(w: EventWriter) -> None:
        w.record("mta.connection.opened", conn=1, peer="127.0.0.1:5")
        w.child("mta/sendgrid").record_many([
            ("mta.message.accepted", "000001", {"conn": 1, "txn": 1, "mail_from": "a@app.drill.test",
                                                "rcpt": "u000001@users.drill.test", "size_bytes": 9,
                                                "message_id": "x", "ack": "sent"}),
            ("mta.reply.sent", "000001", {"conn": 1, "txn": 1, "code": 250})])
        w.record("mta.connection.closed", conn=1, by="client", reason="")

    plain = EventWriter(tmp_path / "plain.jsonl", "mta", clock)
    record_all(plain)
    plain.close()

    def body(name: str) -> bytes:  # the lines after the file's header line
        return (tmp_path / name).read_bytes().partition(b"\n")[2]

    want = body("plain.jsonl")
    assert want.count(b"\n") == 4

    async def timer() -> None:
        w = EventWriter(tmp_path / "timer.jsonl", "mta", clock, flush_ms=50)
        record_all(w)
        assert body("timer.jsonl") == b""  # nothing written yet
        await poll_until_async(lambda: body("timer.jsonl") == want, timeout_s=30,
                               what="the buffered events on disk")
        w.close()

    asyncio.run(timer())
    assert body("timer.jsonl") == want

    async def at_close() -> None:
        w = EventWriter(tmp_path / "close.jsonl", "mta", clock, flush_ms=10_000)
        record_all(w)
        w.close()  # long before the timer: close writes what waits

    asyncio.run(at_close())
    assert body("close.jsonl") == want
    nowait = EventWriter(tmp_path / "noloop.jsonl", "mta", clock, flush_ms=50)
    record_all(nowait)  # no running loop to time a flush: each record call writes at once
    assert body("noloop.jsonl") == want
    nowait.close()
    with pytest.raises(ValueError, match="flush_ms -1: must be between 0 and 10000"):
        EventWriter(tmp_path / "bad.jsonl", "mta", clock, flush_ms=-1)


def test_events_recorded_with_then_reach_the_file_at_the_turns_end_in_one_write_before_their_then_runs(tmp_path):
    """record_many(then=...) (a fake vendor's events and its reply): the events wait for the end of the event loop's
    turn, reach the file in record order as the very bytes plain calls write, and each `then` runs only once they
    are there (with flush_ms: once they are in the buffer). Anything else recorded meanwhile takes them along
    first, so nothing overtakes them; close writes what waits; with no loop running they are written at once."""
    import asyncio

    from maildrill.polling import poll_until_async

    clock = FakeClock(4.0)

    def items(n: int) -> list[tuple[str, str | None, dict[str, object]]]:
        return [("mta.message.accepted", f"{n:06d}", {"conn": 1, "txn": n, "mail_from": "a@app.drill.test",
                                                      "rcpt": f"u{n:06d}@users.drill.test", "size_bytes": 9,
                                                      "message_id": f"m{n}", "ack": "sent"}),
                ("mta.reply.sent", f"{n:06d}", {"conn": 1, "txn": n, "code": 250})]

    def body(name: str) -> bytes:  # the lines after the file's header line
        return (tmp_path / name).read_bytes().partition(b"\n")[2]

    plain = EventWriter(tmp_path / "plain.jsonl", "mta", clock)
    for n in (1, 2, 3):
        plain.child("mta/sendgrid").record_many(items(n))
    plain.record("mta.connection.closed", conn=1, by="client", reason="")
    plain.child("mta/sendgrid").record_many(items(4))
    plain.close()
    want = body("plain.jsonl")
    lines = want.split(b"\n")[:-1]
    assert len(lines) == 9

    seen: list[tuple[int, bool, bytes]] = []  # (request, then's argument, the file's lines when it ran)

    def then(n: int, name: str = "turn.jsonl"):
        return lambda ok: seen.append((n, ok, body(name)))

    async def main() -> None:
        w = EventWriter(tmp_path / "turn.jsonl", "mta", clock)
        v = w.child("mta/sendgrid")
        v.record_many(items(1), then(1))
        v.record_many(items(2), then(2))
        assert body("turn.jsonl") == b"" and seen == []  # both wait for the turn to end
        await poll_until_async(lambda: len(seen) == 2, timeout_s=30, what="the turn's end")
        assert seen == [(1, True, b"\n".join(lines[:4]) + b"\n"), (2, True, b"\n".join(lines[:4]) + b"\n")]
        v.record_many(items(3), then(3))
        w.record("mta.connection.closed", conn=1, by="client", reason="")  # takes request 3's events along first
        assert seen[2] == (3, True, b"\n".join(lines[:7]) + b"\n")
        v.record_many(items(4), then(4))
        w.close()  # writes what waits, then runs its then
        assert seen[3] == (4, True, want)

    asyncio.run(main())
    assert body("turn.jsonl") == want and len(seen) == 4

    async def buffered() -> None:  # flush_ms: at the turn's end they go to the buffer, and `then` runs
        w = EventWriter(tmp_path / "buffered.jsonl", "mta", clock, flush_ms=10_000)
        w.child("mta/sendgrid").record_many(items(1), then(1, "buffered.jsonl"))
        await poll_until_async(lambda: len(seen) == 5, timeout_s=30, what="the turn's end")
        assert seen[4] == (1, True, b"")  # in the buffer, not on disk yet
        w.close()

    asyncio.run(buffered())
    assert body("buffered.jsonl") == b"\n".join(lines[:2]) + b"\n"
    del seen[4]
    noloop = EventWriter(tmp_path / "noloop.jsonl", "mta", clock)
    noloop.child("mta/sendgrid").record_many(items(1), lambda ok: seen.append((1, ok, body("noloop.jsonl"))))
    assert seen[4] == (1, True, b"\n".join(lines[:2]) + b"\n")
    noloop.close()


def test_a_failed_turn_write_gives_then_false_and_reports_the_error(tmp_path):
    """When the turn's write fails (here a FIFO whose reader has gone: EPIPE), each waiting `then` learns it
    (False: the vendor closes the connection instead of replying) and the error reaches the loop's handler."""
    import asyncio

    from maildrill.polling import poll_until_async

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    w = EventWriter(fifo, "mta", FakeClock(1.0))
    os.close(reader)
    outcomes: list[bool] = []
    errors: list[BaseException | None] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx.get("exception")))
        w.record_many([("mta.reply.sent", None, {"conn": 1, "txn": 1, "code": 250})], outcomes.append)
        await poll_until_async(lambda: outcomes and errors, timeout_s=30, what="the failed write")

    asyncio.run(main())
    assert outcomes == [False]
    assert len(errors) == 1 and isinstance(errors[0], BrokenPipeError)
    w.close()
