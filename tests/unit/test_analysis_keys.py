"""The join's attempts keep their (mta, conn, txn) whatever the connection and transaction numbers are: small
non-negative ints (which the pass packs into one int), a str, None, a negative or a huge number (which it keeps as
the tuple), more MTAs than it numbers. Each event lands on its own transaction, a lost ack on the acceptance it
names, a bounce names its transaction — in any order of events, and in two processes at every cut."""

from __future__ import annotations

import random
from pathlib import Path

from maildrill.harness.analysis.join import Acceptance, Attempt, Bounce, Join, Origin, join
from maildrill.harness.events import Event

from tests.unit.test_analysis_split import line_starts, serial, two_processes, write_one_file

BIG_CONN = 2**40
BIG_TXN = 2**21


def story() -> list[Event]:
    e = Event
    return [
        e(1.0, "load/0", "load.request.completed", "a", {"class": "otp", "ok": True, "latency_ms": 5.0}),
        e(1.0, "load/0", "load.request.completed", "b", {"class": "otp", "ok": True, "latency_ms": 5.0}),
        e(1.0, "load/0", "load.request.completed", "c", {"class": "otp", "ok": True, "latency_ms": 5.0}),
        # one transaction (packed key) storing two ids, the second's 250 lost
        e(2.0, "mta/mx", "mta.reply.sent", "a", {"conn": 1, "txn": 1, "code": 451}),
        e(2.1, "mta/mx", "mta.reply.sent", "a", {"conn": 1, "txn": 1, "code": 250}),
        e(2.1, "mta/mx", "mta.reply.sent", "b", {"conn": 1, "txn": 1, "code": 250}),
        e(2.2, "mta/mx", "mta.message.accepted", "a", {"conn": 1, "txn": 1, "ack": "sent"}),
        e(2.2, "mta/mx", "mta.message.accepted", "b", {"conn": 1, "txn": 1, "ack": "sent"}),
        e(2.3, "mta/mx", "mta.message.ack_lost", "b", {"conn": 1, "txn": 1}),
        # a str conn, bounced
        e(3.0, "mta/mx", "mta.reply.sent", "c", {"conn": "c-7", "txn": 1, "code": 550}),
        # a conn too big to pack: a's second acceptance, its 250 lost
        e(4.0, "mta/mx", "mta.reply.sent", "a", {"conn": BIG_CONN, "txn": 1, "code": 250}),
        e(4.1, "mta/mx", "mta.message.accepted", "a", {"conn": BIG_CONN, "txn": 1, "ack": "sent"}),
        e(4.2, "mta/mx", "mta.message.ack_lost", "a", {"conn": BIG_CONN, "txn": 1}),
        # a txn too big to pack; the same conn and txn bits at another MTA are another transaction
        e(5.0, "mta/mx2", "mta.reply.sent", "c", {"conn": 3, "txn": BIG_TXN, "code": 250}),
        e(5.1, "mta/mx2", "mta.message.accepted", "c", {"conn": 3, "txn": BIG_TXN, "ack": "sent"}),
        e(5.5, "mta/mx", "mta.reply.sent", "c", {"conn": 3, "txn": BIG_TXN, "code": 452}),
        # b's second acceptance in a packed key, its 250 lost
        e(6.0, "mta/mx2", "mta.reply.sent", "b", {"conn": 4, "txn": 1, "code": 250}),
        e(6.1, "mta/mx2", "mta.message.accepted", "b", {"conn": 4, "txn": 1, "ack": "sent"}),
        e(6.2, "mta/mx2", "mta.message.ack_lost", "b", {"conn": 4, "txn": 1}),
        # a negative conn; a lost ack of an id the transaction did not store changes nothing
        e(7.0, "mta/mx", "mta.reply.sent", "a", {"conn": -1, "txn": 1, "code": 421}),
        e(7.1, "mta/mx2", "mta.message.ack_lost", "a", {"conn": 4, "txn": 1}),
        # a vendor request without conn or txn
        e(8.0, "mta/sg", "mta.request.received", "c", {}),
    ]


WANT_ATTEMPTS = [
    Attempt(("mx", 1, 1), "mx", 2.0, 2.2, ("a", "b"), 451, True, (451, 250, 250), "lost"),
    Attempt(("mx", "c-7", 1), "mx", 3.0, 3.0, ("c",), 550, False, (550,), None),
    Attempt(("mx", BIG_CONN, 1), "mx", 4.0, 4.1, ("a",), 0, True, (250,), "lost"),
    Attempt(("mx2", 3, BIG_TXN), "mx2", 5.0, 5.1, ("c",), 0, True, (250,), "sent"),
    Attempt(("mx", 3, BIG_TXN), "mx", 5.5, 5.5, ("c",), 452, False, (452,), None),
    Attempt(("mx2", 4, 1), "mx2", 6.0, 6.1, ("b",), 0, True, (250,), "lost"),
    Attempt(("mx", -1, 1), "mx", 7.0, 7.0, ("a",), 421, False, (421,), None),
    Attempt(("sg", None, None), "sg", 8.0, 8.0, ("c",), 0, False, (), None),
]


def test_every_kind_of_key_keeps_its_transaction_in_any_order() -> None:
    evs = story()
    want = join(evs)
    assert list(want.attempts) == WANT_ATTEMPTS
    assert by_id(want) == {
        "a": ((Acceptance(2.2, "mx", "sent"), Acceptance(4.1, "mx", "lost")), None,
              [("mx", 1, 1), ("mx", BIG_CONN, 1), ("mx", -1, 1)]),
        "b": ((Acceptance(2.2, "mx", "lost"), Acceptance(6.1, "mx2", "lost")), None, [("mx", 1, 1), ("mx2", 4, 1)]),
        "c": ((Acceptance(5.1, "mx2", "sent"),), Bounce(3.0, "mx", ("mx", "c-7", 1)),
              [("mx", "c-7", 1), ("mx2", 3, BIG_TXN), ("mx", 3, BIG_TXN), ("sg", None, None)]),
    }
    rnd = random.Random(3)
    for _ in range(40):  # an attempt's ids and codes are in the order read; the rest is the same in any order
        rnd.shuffle(evs)
        got = join(evs)
        assert by_id(got) == by_id(want)
        assert unordered(got) == unordered(want)


def by_id(j: Join) -> dict[str, tuple[object, ...]]:
    return {c: (m.acceptances, m.first_5xx, [a.key for a in m.attempts]) for c, m in j.messages.items()}


def unordered(j: Join) -> list[tuple[object, ...]]:
    return [(a.key, a.start, a.end, sorted(a.corrs), a.accepted, sorted(a.codes), a.ack) for a in j.attempts]


def test_two_processes_at_every_cut_keep_every_kind_of_key(tmp_path: Path) -> None:
    path = write_one_file(tmp_path, story())
    want, _ = serial(tmp_path, Origin())
    assert list(want.attempts) == WANT_ATTEMPTS
    for at in line_starts(path)[1:]:
        got, problems, how = two_processes(tmp_path, Origin(), at)
        assert how == {"processes": 2}, at
        assert (got, problems) == (want, []), at


def test_more_mtas_than_the_pass_numbers_keep_their_keys() -> None:
    names = [f"m{i:04}" for i in range(1100)]
    evs = [Event(1.0, "load/0", "load.request.completed", "x", {"class": "otp", "ok": True, "latency_ms": 1.0})]
    for i, name in enumerate(names):
        evs.append(Event(2.0 + i, f"mta/{name}", "mta.reply.sent", "x", {"conn": 1, "txn": 1, "code": 250}))
        evs.append(Event(2.5 + i, f"mta/{name}", "mta.message.accepted", "x", {"conn": 1, "txn": 1, "ack": "sent"}))
    evs.append(Event(9999.0, f"mta/{names[-1]}", "mta.message.ack_lost", "x", {"conn": 1, "txn": 1}))
    j = join(evs)
    assert [a.key for a in j.attempts] == [(name, 1, 1) for name in names]
    assert [a.ack for a in j.attempts] == ["sent"] * (len(names) - 1) + ["lost"]
    accs = j.messages["x"].acceptances
    assert accs == tuple(Acceptance(2.5 + i, name, "sent" if i < len(names) - 1 else "lost")
                         for i, name in enumerate(names))


def test_attempts_made_column_by_column_are_those_made_one_by_one() -> None:
    """With every key packed the attempts are made a column at a time; one str conn sends the whole join down
    the one-by-one path. Both give the same attempts and the same messages (ties in start and MTA name included)."""
    from maildrill.harness.analysis.synthetic import events, random_model

    evs = events(random_model(300, seed=4, duration_s=30.0))
    tie = [Event(7.0, f"mta/{m}", "mta.reply.sent", "t", {"conn": 9000 + i, "txn": 1, "code": 451})
           for i, m in enumerate(["zz", "aa", "zz", "aa"])]
    packed = join([*evs, *tie])
    odd = Event(7.0, "mta/odd", "mta.reply.sent", None, {"conn": "x", "txn": 1, "code": 250})
    one_by_one = join([*evs, *tie, odd])
    kept = [a for a in one_by_one.attempts if a.mta != "odd"]
    assert list(packed.attempts) == kept and len(kept) == len(one_by_one.attempts) - 1
    assert [a.mta for a in packed.attempts if a.corrs == ("t",)] == ["aa", "aa", "zz", "zz"]
    assert [a.key[1] for a in packed.attempts if a.corrs == ("t",)] == [9001, 9003, 9000, 9002]
    assert packed.messages == one_by_one.messages
