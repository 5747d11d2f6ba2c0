"""The measures done as array arithmetic (`analysis.columns`, `drain`, `series`) give exactly what their step-by-step
definitions give, on any steps: ties, negative levels (a message resolved before the SUT acknowledged it), steps
before the reference, none after it."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from maildrill.harness.analysis import columns, drain, series
from maildrill.harness.analysis.join import join
from maildrill.harness.analysis.per_mta import by_mta
from maildrill.harness.events import Event

times = st.lists(st.sampled_from([-1.5, -0.5, 0.0, 0.25, 1.0, 1.0, 2.0, 2.5, 3.0, 7.75, 40.0]) | st.floats(-5, 50),
                 max_size=40)


def walk(starts: list[float], ends: list[float], ref: float) -> tuple[int, float | None]:
    """The definition: walk the steps in time order, at equal times the take-ons (+1) first."""
    steps = sorted([(t, 0, 1) for t in starts] + [(t, 1, -1) for t in ends])
    if not steps:
        return 0, None
    level = peak = 0
    at_ref: int | None = None
    drained: float | None = None
    for t, _, step in steps:
        if at_ref is None and t > ref:
            at_ref = level
            if level == 0:
                drained = 0.0
        level += step
        peak = max(peak, level)
        if at_ref is not None and drained is None and level == 0:
            drained = t - ref
    if at_ref is None:
        drained = 0.0 if level == 0 else None
    return peak, drained


@settings(max_examples=400, deadline=None)
@given(times, times, st.sampled_from([-1.0, 0.0, 1.0, 2.0, 2.5, 10.0, 100.0]))
def test_drain_is_the_walk_over_its_steps(starts: list[float], ends: list[float], ref: float) -> None:
    if not starts:
        assert drain.drain(np.array([]), np.sort(np.array(ends, dtype=np.float64)), ref) == drain.Drain(0, None)
        return
    got = drain.drain(np.sort(np.array(starts)), np.sort(np.array(ends, dtype=np.float64)), ref)
    assert (got.outstanding_peak, got.drain_s) == walk(starts, ends, ref)
    assert type(got.outstanding_peak) is int and (got.drain_s is None or type(got.drain_s) is float)


@settings(max_examples=200, deadline=None)
@given(times, st.integers(1, 12))
def test_count_is_the_per_second_tally(ts: list[float], bins: int) -> None:
    want = [0.0] * bins
    for t in ts:
        i = int(t) if t >= 0 else -1
        if 0 <= i < bins:
            want[i] += 1
        elif i >= bins:
            want[-1] += 1
    got = series.count(ts, bins)
    assert got.values == tuple(want) and got.t_s == tuple(float(i) for i in range(bins))
    assert all(type(v) is float for v in got.values)


def test_a_time_beyond_every_bin_lands_in_the_last_one() -> None:
    assert series.count([0.5, 1e300, math.inf], 3).values == (1.0, 0.0, 2.0)


def test_per_class_counts_are_those_of_the_class_messages_stories() -> None:
    """A transaction that stored two ids of one class and one of another is one attempt of each class; discarded
    (blackholed) messages count for their class; a class's first and repeated acceptances by each MTA."""
    e = Event
    req = [e(0.1 * i, "load/0", "load.request.completed", c, {"class": k, "ok": True, "latency_ms": 1.0})
           for i, (c, k) in enumerate([("a", "otp"), ("b", "otp"), ("c", "reset"), ("d", "reset"), ("x", None)])]
    evs = [
        *req,
        e(1.0, "mta/mx", "mta.reply.sent", None, {"conn": 1, "txn": 1, "code": 250, "verb": "MAIL"}),
        *[e(1.1, "mta/mx", "mta.reply.sent", c, {"conn": 1, "txn": 1, "code": 250, "verb": "RCPT"}) for c in "abc"],
        *[e(1.2, "mta/mx", "mta.message.accepted", c, {"conn": 1, "txn": 1, "ack": "sent"}) for c in "abc"],
        e(2.0, "mta/mx", "mta.reply.sent", "d", {"conn": 2, "txn": 1, "code": 451}),
        e(3.0, "mta/bk", "mta.message.discarded", "d", {"conn": 1, "txn": 1}),
        e(4.0, "mta/bk", "mta.message.accepted", "a", {"conn": 2, "txn": 1, "ack": "sent"}),
        e(4.5, "mta/bk", "mta.message.accepted", "x", {"conn": 3, "txn": 1, "ack": "sent"}),
    ]
    j = join(evs)
    c = columns.build(j, ("otp", "reset"))
    want_attempts = tuple(len({a.key for m in j.messages.values() if m.cls == k for a in m.attempts})
                          for k in ("otp", "reset"))
    assert c.attempts_by_class == want_attempts == (2, 3)
    assert c.discarded_by_class == (0, 1)
    rows = by_mta(["mx", "bk", "nowhere"], j.attempts, c, j.discarded_by_mta)
    assert {k: (r["delivered"], r["duplicates"], r["first_delivery_s"], r["last_delivery_s"])
            for k, r in rows.items()} == {"mx": (3, 0, 1.2, 1.2), "bk": (2, 1, 4.0, 4.5),
                                          "nowhere": (0, 0, None, None)}
    assert c.pick(None, c.accepted_again) == [j.messages["a"]]
    assert c.pick(None, c.retried) == [j.messages["a"], j.messages["d"]]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.5, 2.0, 5.0, 30.0]), st.sampled_from([None, 1.0, 10.0]))
def test_otp_expiry_over_the_columns_is_each_messages_own(seed: int, first_ttl: float, second_ttl: float | None,
                                                          ) -> None:
    """`latency.expired_flags` (the measures) and `latency.expired` (the offenders list) are one rule: on random
    synthetic drills, with ttls that cut through their latencies, the same messages are expired by both."""
    from maildrill.harness.analysis import latency
    from maildrill.harness.analysis.synthetic import events, random_model

    j = join(events(random_model(200, seed=seed, duration_s=20.0)))
    classes = sorted({m.cls for m in j.messages.values() if m.cls is not None})
    ttl = {classes[0]: first_ttl, **({classes[1]: second_ttl} if second_ttl is not None else {})}
    flags = latency.expired_flags(columns.build(j, tuple(classes)), ttl)
    want = [latency.expired(m, ttl) for m in j.messages.values()]
    assert flags.tolist() == want
    assert sum(want) < len(want) and (sum(want) > 0 or first_ttl == 30.0)  # the ttls cut through the drill
