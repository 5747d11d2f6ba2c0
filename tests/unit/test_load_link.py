"""The pure decisions of the master/worker link: the clock handshake, who sends which need, roster indices."""

from __future__ import annotations

import pytest
from maildrill.harness.errors import UsageError
from maildrill.harness.load.link import ClockSync, assign_indices, owner_of, parse_host_port
from maildrill.harness.load.plan import Dispatcher, LoadPlan, corr_of
from maildrill.harness.scenario.models import ClassSpec, ConstantShape, HTTPRequestSpec, LoadSpec


def test_the_clock_handshake_keeps_the_shortest_round_trip_and_states_its_bound() -> None:
    # the worker's monotonic clock reads 1000 s more than the harness's; the run clock's origin is harness 50 s,
    # so the true origin on the worker's clock is 1050 s
    sync = ClockSync(window=3)
    # ping sent at worker 1100.0, the master read its run clock (50.010) 10 ms later, the pong came back at 1100.030
    s1 = sync.add(1100.0, 50.010, 1100.030)
    assert (round(s1.origin, 6), round(s1.half_rtt_s, 6)) == (1050.005, 0.015)
    s2 = sync.add(1101.0, 51.001, 1101.002)  # a quick one: 2 ms round trip
    assert (round(s2.origin, 6), round(s2.half_rtt_s, 6)) == (1050.0, 0.001)
    assert sync.best() == s2
    sync.add(1102.0, 52.040, 1102.050)
    sync.add(1103.0, 53.030, 1103.050)
    assert sync.best() == s2  # still within the window of 3
    sync.add(1104.0, 54.002, 1104.006)
    best = sync.best()
    assert best is not None and round(best.half_rtt_s, 6) == 0.003  # s2 fell out of the window
    assert sync.stats() == {"clock_uncertainty_ms": 3.0, "clock_worst_uncertainty_ms": 15.0,
                            "clock_drift_ms": -4.0, "clock_pings": 5, "clock_origin_s": 1050.001}
    with pytest.raises(ValueError, match="before its ping"):
        sync.add(2.0, 1.0, 1.0)


def test_every_delivery_goes_to_the_worker_that_sent_the_need() -> None:
    load = LoadSpec(shape=ConstantShape(rps=10), classes=[ClassSpec(name="otp", request=HTTPRequestSpec(path="/"))])
    plan = LoadPlan(load=load, duration_s=3, seed=1, sut_url="http://127.0.0.1:1", smtp_host=None, smtp_port=None,
                    go_file="/nonexistent/go.json", mta_events="/nonexistent/mta.jsonl")
    for count in (1, 2, 3, 5):
        for i in range(count):
            d = Dispatcher(plan, index=i, count=count)
            while (job := d.take()) is not None:
                assert owner_of(job.corr, count) == i
    assert owner_of(corr_of(17), 4) == 1
    assert [owner_of(c, 3) for c in ("x17", "u", "u12a", "")] == [None] * 4
    assert owner_of("u000001", 0) is None


def test_roster_indices_keep_free_preferences_and_fill_the_rest_in_join_order() -> None:
    assert assign_indices([("a", None), ("b", None), ("c", None)]) == {"a": 0, "b": 1, "c": 2}
    assert assign_indices([("a", None), ("b", 0)]) == {"a": 1, "b": 0}
    # a preference outside the roster, or already taken, is not kept
    assert assign_indices([("a", 1), ("b", 1), ("c", 7)]) == {"a": 1, "b": 0, "c": 2}
    assert assign_indices([]) == {}


def test_host_port_parsing_says_what_is_wrong() -> None:
    assert parse_host_port("10.0.0.1:5557", "--master") == ("10.0.0.1", 5557)
    assert parse_host_port("loadmaster", "--master") == ("loadmaster", None)
    assert parse_host_port("[::1]:80", "--master") == ("::1", 80)
    assert parse_host_port("::1", "--master") == ("::1", None)
    for bad, why in (("h:0", "the port must be a number from 1 to 65535"), ("h:x", "the port must be"),
                     (":80", "no host"), ("[::1]x", "expected [ADDRESS]:PORT")):
        with pytest.raises(UsageError, match=r"--master '.*': " + why.replace("[", r"\[").replace("]", r"\]")):
            parse_host_port(bad, "--master")
