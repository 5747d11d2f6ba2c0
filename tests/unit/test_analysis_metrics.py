"""Hand-written event stories with exact expected metrics, and the retry synchronisation index's properties."""

from __future__ import annotations

import random

import pytest
from maildrill.harness.analysis import FaultWindow, Offender, analyze
from maildrill.harness.analysis.stats import percentile, sync_index
from maildrill.harness.events import Event


def ev(t: float, source: str, kind: str, corr: str | None = None, **data: object) -> Event:
    return Event(t, source, kind, corr, data)


def request(t: float, corr: str, cls: str = "otp", resend: int = 0, ok: bool = True, ms: float = 3.0) -> Event:
    return ev(t, "load/0", "load.request.completed", corr, **{"class": cls, "resend": resend, "ok": ok,
                                                               "latency_ms": ms, "status": 202 if ok else 500})


def attempt(t: float, mta: str, conn: int, corr: str, code: int, ack: str | None = None) -> list[Event]:
    src = f"mta/{mta}"
    out = [ev(t, src, "mta.reply.sent", corr, conn=conn, txn=1, verb="MAIL", code=250 if code != 421 else 421)]
    if code == 421:
        return out
    out.append(ev(t + 0.01, src, "mta.reply.sent", corr, conn=conn, txn=1, verb="RCPT", code=code))
    if code == 250:
        out.append(ev(t + 0.02, src, "mta.message.accepted", corr, conn=conn, txn=1, ack=ack or "sent"))
    return out


STORY = [
    ev(10.0, "run", "run.phase.changed", phase="load", load_t0_s=10.0),
    request(10.5, "u1"), request(11.0, "u2"), request(11.5, "u3", cls="reset"), request(12.0, "u4", ok=False),
    *attempt(10.6, "primary", 1, "u1", 421),
    *attempt(12.6, "primary", 2, "u1", 250, ack="lost"),       # stored, but the 250 never arrived
    *attempt(14.6, "backup", 1, "u1", 250),                    # -> a duplicate after a lost ack
    *attempt(11.1, "primary", 3, "u2", 550),                   # bounced ...
    *attempt(13.1, "primary", 4, "u2", 550),                   # ... and retried: the bug
    *attempt(11.6, "primary", 5, "u3", 250),
    ev(10.0 + 2, "run", "run.action.fired", action=0, target="mta/primary", what="set throttle", until_t_s=None),
    ev(10.0 + 6, "run", "run.action.fired", action=1, target="mta/primary", what="set accept", until_t_s=None),
    ev(20.0, "run", "run.phase.changed", phase="drain"),
]
SCENARIO = {"duration_s": 10, "time_scale": 1, "load": {"classes": [{"name": "otp", "ttl_s": 3}, {"name": "reset",
                                                                                              "ttl_s": 60}]}}


def test_a_small_story_gives_exact_metrics() -> None:
    a = analyze(STORY, SCENARIO)
    m = a.metrics
    assert {k: m[k] for k in ("requests_total", "messages_requested", "delivered", "undelivered", "attempts_total",
                              "permanent_failures_retried", "duplicates", "duplicate_messages",
                              "duplicates_after_lost_ack", "duplicates_failover", "otp_expired")} == {
        "requests_total": 4, "messages_requested": 4, "delivered": 2, "undelivered": 2, "attempts_total": 6,
        "permanent_failures_retried": 1, "duplicates": 1, "duplicate_messages": 1, "duplicates_after_lost_ack": 1,
        "duplicates_failover": 0, "otp_expired": 2}  # u2 (bounced) and u4 (app failed) never got their code
    # owed a delivery: u1 (requested at 0.5, stored at 2.62), u3 (0.12 s) and u4, never delivered; u2 bounced
    assert (m["latency_p50_s"], m["latency_p95_s"], m["latency_max_s"]) == (pytest.approx(2.12), None, None)
    assert m["deferred_ratio"] == pytest.approx(1 / 6)
    assert m["http_error_ratio"] == 0.25
    # u4 (the failed request) completed at 2.0 s, inside the throttle window
    assert a.windows == (FaultWindow("mta/primary", "set throttle", 2.0, 6.0, requests=1, http_error_ratio=1.0,
                                     request_latency_p99_ms=3.0),)
    assert (m["http_error_ratio_in_faults"], m["first_delivery_s"], m["last_delivery_s"]) == pytest.approx(
        (1.0, 1.62, 4.62))
    assert (a.by_mta["backup"]["first_delivery_s"], a.by_mta["backup"]["last_delivery_s"]) == pytest.approx(
        (4.62, 4.62))  # traffic reached the backup only with the duplicate
    # u4's request failed and it was never sent: not in the SUT's queue, so not outstanding; the rest were
    # resolved by the end of the load (10 s, after the throttle window)
    assert (m["drain_s"], m["outstanding_peak"]) == (0.0, 2)
    assert a.by_mta["backup"]["duplicates"] == 1 and a.by_mta["primary"]["permanent_failures_retried"] == 1
    assert a.by_class["reset"]["latency_p50_s"] == pytest.approx(0.12)
    rules = sorted((o.rule, o.corr) for o in a.offenders)
    assert rules == [("duplicates", "u1"), ("otp_expired", "u2"), ("otp_expired", "u4"),
                     ("permanent_failures_retried", "u2"), ("undelivered", "u2"), ("undelivered", "u4")]
    dup = next(o for o in a.offenders if o.rule == "duplicates")
    assert dup == Offender("u1", "otp", "duplicates",
                           "accepted 2 times: by primary at 2.62 s (250 lost), by backup at 4.62 s")


def test_drain_is_measured_from_the_end_of_the_last_fault() -> None:
    story = [e for e in STORY if e.corr not in ("u4",)]
    a = analyze(story, SCENARIO)
    # the throttle ended at 6 s but the load ran until 10 s: everything was resolved by then
    assert a.metrics["drain_s"] == 0.0
    # the bounced u2 is not late, it is resolved: the slowest delivery owed is u1's
    assert (a.metrics["latency_p99_s"], a.metrics["latency_max_s"]) == pytest.approx((2.12, 2.12))
    late = [*story, request(19.0, "u9"), *attempt(23.0, "primary", 9, "u9", 250)]
    assert analyze(late, SCENARIO).metrics["drain_s"] == pytest.approx(3.02)


def test_without_a_scenario_classes_come_from_the_events_and_expiry_is_not_measured() -> None:
    a = analyze(STORY, None)
    assert set(a.by_class) == {"otp", "reset"}
    assert a.metrics["otp_expired"] is None and a.ttl_s == {}


def test_time_scale_turns_event_seconds_into_scenario_seconds() -> None:
    scaled = [Event(10 + (e.t_s - 10) * 0.1, e.source, e.kind, e.corr, e.data) for e in STORY]
    a = analyze(scaled, {**SCENARIO, "time_scale": 0.1})
    assert a.metrics["latency_p50_s"] == pytest.approx(2.12)
    assert a.windows[0].start_s == pytest.approx(2.0)


def test_percentile_is_nearest_rank() -> None:
    assert [percentile([1, 2, 3, 4], p) for p in (0, 25, 50, 51, 99, 100)] == [1, 1, 2, 3, 4, 4]
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 50) is None


def test_sync_index_separates_lock_step_retries_from_full_jitter() -> None:
    rnd = random.Random(7)

    def messages(delay: object) -> list[list[float]]:
        return [[delay(k) for k in range(rnd.randrange(1, 6))] for _ in range(200)]  # type: ignore[operator]

    fixed = messages(lambda k: 2.0 + rnd.uniform(-0.02, 0.02))
    no_jitter = messages(lambda k: min(30.0, 2.0 * 2 ** k) * rnd.uniform(0.99, 1.01))
    full_jitter = messages(lambda k: rnd.uniform(0, min(30.0, 2.0 * 2 ** k)))
    s_fixed, s_exp, s_full = sync_index(fixed), sync_index(no_jitter), sync_index(full_jitter)
    assert s_fixed is not None and s_exp is not None and s_full is not None
    assert s_fixed >= 0.95 and s_exp >= 0.95  # backoff without jitter only stretches the lock-step
    assert s_full <= 0.25
    assert sync_index([[x * 0.05 for x in seq] for seq in fixed]) == s_fixed  # time_scale does not change it
    assert sync_index(fixed[:20]) >= 0.9  # nor does the number of messages
    assert sync_index([[2.0, 2.0], [2.0, 2.0]]) is None  # fewer than 5 retries: not measured


def test_a_message_the_sut_refused_is_not_outstanding_but_one_it_queued_before_failing_is() -> None:
    base = [e for e in STORY if e.corr != "u4"]
    # u5: the app answered 500 and never sent it (the SUT was down) -> not in its queue, the drain still ends
    refused = [*base, request(19.0, "u5", ok=False)]
    a = analyze(refused, SCENARIO)
    assert (a.metrics["drain_s"], a.metrics["undelivered"], a.metrics["latency_max_s"]) == (0.0, 2, None)
    # u6: the reply was cut (a crash), yet it had been queued and goes out at 23 s: outstanding until then
    queued = [*base, request(19.0, "u6", ok=False), *attempt(23.0, "primary", 9, "u6", 250)]
    assert analyze(queued, SCENARIO).metrics["drain_s"] == pytest.approx(3.02)


def test_a_250_the_client_never_got_makes_the_retry_a_duplicate_after_a_lost_ack() -> None:
    gone = ev(10.7, "mta/primary", "mta.message.ack_lost", "u7", conn=7, txn=1, rcpt="u7@users.drill.test",
              reason="the client was gone before the 250 was sent")
    story = [request(10.1, "u7"), *attempt(10.6, "primary", 7, "u7", 250), *attempt(13.0, "primary", 8, "u7", 250)]
    for events in ([*story, gone], [gone, *reversed(story)]):  # however the files are read
        a = analyze(events, SCENARIO)
        assert (a.metrics["duplicates"], a.metrics["duplicates_after_lost_ack"]) == (1, 1)
        assert [o.detail for o in a.offenders if o.rule == "duplicates"] == [
            "accepted 2 times: by primary at 10.62 s (250 lost), by primary at 13.02 s"]  # no load phase: t0 = 0


def test_backing_off_after_a_421_counts_attempts_to_that_mta_in_the_next_60_s() -> None:
    from maildrill.harness.assertions import assert_backs_off_after_421

    throttled = [ev(5.0, "mta/primary", "mta.reply.sent", None, conn=1, txn=0, verb="CONNECT", code=421)]
    retries = [e for i in range(4) for e in attempt(6.0 + i * 10, "primary", 2 + i, f"u{i}", 250)]
    elsewhere = [e for i in range(9) for e in attempt(6.0 + i, "backup", 10 + i, f"v{i}", 250)]
    late = [e for i in range(3) for e in attempt(70.0 + i, "primary", 20 + i, f"w{i}", 250)]
    events = throttled + retries + elsewhere + late
    assert_backs_off_after_421(events, 4)
    with pytest.raises(AssertionError) as info:
        assert_backs_off_after_421(events, 3)
    assert str(info.value) == ("4 attempts to mta/primary within 60 s after its 421 at t=5.00 s (allowed 3): "
                               "the sender does not back off")
