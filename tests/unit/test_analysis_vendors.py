"""Mixed fleets: events of an SMTP MTA and of fake email-API vendors in one run give the right metrics.

A vendor records as `mta/<name>` with the MTA's event kinds: one HTTP request is one attempt (`conn`, `txn`),
its reply an `mta.reply.sent` with `verb: API`, the SMTP-equivalent `code` and the vendor's `http_status`;
a stored message is `mta.message.accepted` (`ack: lost` when the response never reached the client).
"""

from __future__ import annotations

import pytest
from maildrill.harness.analysis import FaultWindow, analyze
from maildrill.harness.events import Event


def ev(t: float, source: str, kind: str, corr: str | None = None, **data: object) -> Event:
    return Event(t, source, kind, corr, data)


def request(t: float, corr: str) -> Event:
    return ev(t, "load/0", "load.request.completed", corr, **{"class": "otp", "resend": 0, "ok": True,
                                                              "latency_ms": 4.0, "status": 202})


def smtp(t: float, mta: str, conn: int, corr: str, code: int) -> list[Event]:
    src, rcpt = f"mta/{mta}", f"{corr}@users.drill.test"
    out = [ev(t, src, "mta.reply.sent", None, conn=conn, txn=1, verb="MAIL", code=250),
           ev(t + 0.01, src, "mta.reply.sent", corr, conn=conn, txn=1, verb="RCPT", code=code, rcpt=rcpt)]
    if code == 250:
        out.append(ev(t + 0.02, src, "mta.message.accepted", corr, conn=conn, txn=1, rcpt=rcpt, ack="sent"))
    return out


def api(t: float, vendor: str, conn: int, corr: str, code: int, http_status: int, *, lost: bool = False,
        error_code: str | None = None) -> list[Event]:
    """One API request: accepted (stored, then the reply), refused (the reply only), or stored with the
    response lost (`lose_response`: no reply is ever sent)."""
    src, rcpt = f"mta/{vendor}", f"{corr}@users.drill.test"
    out = []
    if code == 250:
        out.append(ev(t, src, "mta.message.accepted", corr, conn=conn, txn=1, rcpt=rcpt,
                      ack="lost" if lost else "sent", message_id=f"{vendor}-{conn}"))
    if not lost:
        out.append(ev(t + 0.01, src, "mta.reply.sent", corr, conn=conn, txn=1, verb="API", code=code,
                      http_status=http_status, error_code=error_code, api_key="SG.test", idempotency_key=None,
                      rcpt=rcpt))
    return out


STORY = [
    ev(10.0, "run", "run.phase.changed", phase="load", load_t0_s=10.0),
    request(10.5, "u1"), request(11.0, "u2"), request(11.5, "u3"), request(12.0, "u4"), request(12.5, "u5"),
    *api(10.6, "primary", 1, "u1", 250, 202, lost=True),     # stored, response lost ...
    *api(12.6, "backup", 1, "u1", 250, 200),                 # ... the SUT fails over: a duplicate after a lost ack
    *api(11.1, "primary", 2, "u2", 451, 429, error_code="too many requests"),  # throttled (deferred) ...
    *api(11.2, "backup", 2, "u2", 250, 200),                 # ... delivered by the backup vendor: no duplicate
    *api(11.6, "primary", 3, "u3", 550, 400, error_code="invalid recipient"),  # a permanent rejection ...
    *smtp(13.6, "relay", 1, "u3", 250),                      # ... retried over SMTP: the bug
    *smtp(12.1, "relay", 2, "u4", 250),                      # accepted by the relay,
    *api(12.3, "primary", 4, "u4", 250, 202),                # then by the vendor too: a failover duplicate
    *api(12.6, "primary", 5, "u5", 250, 202),
    ev(11.0, "run", "run.action.fired", action=0, target="vendor/primary", what="set go_dark(lose_response)",
       until_t_s=None),
    ev(13.0, "run", "run.action.fired", action=1, target="vendor/primary", what="set throttle", until_t_s=None),
    ev(14.0, "run", "run.action.fired", action=2, target="vendor/primary", what="set accept", until_t_s=None),
    ev(20.0, "run", "run.phase.changed", phase="drain"),
]
SCENARIO = {"duration_s": 10, "time_scale": 1, "load": {"classes": [{"name": "otp", "ttl_s": 2}]},
            "mtas": [{"name": "relay"}],
            "vendors": [{"name": "primary", "api": "sendgrid"}, {"name": "backup", "api": "ses"},
                        {"name": "idle", "api": "postmark"}]}


def test_a_mixed_smtp_and_api_fleet_gives_exact_metrics() -> None:
    a = analyze(STORY, SCENARIO)
    m = a.metrics
    assert {k: m[k] for k in ("messages_requested", "delivered", "undelivered", "attempts_total", "duplicates",
                              "duplicate_messages", "duplicates_after_lost_ack", "duplicates_failover",
                              "permanent_failures_retried", "otp_expired")} == {
        "messages_requested": 5, "delivered": 5, "undelivered": 0, "attempts_total": 9, "duplicates": 2,
        "duplicate_messages": 2, "duplicates_after_lost_ack": 1, "duplicates_failover": 1,
        "permanent_failures_retried": 1, "otp_expired": 1}  # u3: bounced at 0.11 s, delivered at 2.12 s (ttl 2)
    assert m["deferred_ratio"] == pytest.approx(1 / 9)  # the 429 is a deferral, as a 4xx
    # latencies: u1 0.1, u2 0.2, u3 2.12 (its SMTP retry), u4 0.12, u5 0.1
    assert (m["latency_p50_s"], m["latency_max_s"]) == pytest.approx((0.12, 2.12))
    assert a.by_mta == {
        "backup": {"first_delivery_s": pytest.approx(1.2), "last_delivery_s": pytest.approx(2.6), "delivered": 2,
                   "acknowledged_but_lost": 0, "attempts_total": 2, "deferred_ratio": 0.0,
                   "permanent_failures_retried": 0, "duplicates": 1},
        "idle": {"first_delivery_s": None, "last_delivery_s": None, "delivered": 0, "acknowledged_but_lost": 0,
                 "attempts_total": 0, "deferred_ratio": None, "permanent_failures_retried": 0, "duplicates": 0},
        "primary": {"first_delivery_s": pytest.approx(0.6), "last_delivery_s": pytest.approx(2.6), "delivered": 3,
                    "acknowledged_but_lost": 0, "attempts_total": 5, "deferred_ratio": pytest.approx(1 / 5),
                    "permanent_failures_retried": 1, "duplicates": 1},
        "relay": {"first_delivery_s": pytest.approx(2.12), "last_delivery_s": pytest.approx(3.62), "delivered": 2,
                  "acknowledged_but_lost": 0, "attempts_total": 2, "deferred_ratio": 0.0,
                  "permanent_failures_retried": 0, "duplicates": 0},
    }
    # a later action on the same vendor ends the window before it, as for an MTA
    assert [(w.target, w.what, w.start_s, w.end_s) for w in a.windows] == [
        ("vendor/primary", "set go_dark(lose_response)", 1.0, 3.0), ("vendor/primary", "set throttle", 3.0, 4.0)]
    assert isinstance(a.windows[0], FaultWindow)
    details = sorted((o.rule, o.corr, o.detail) for o in a.offenders if o.rule != "otp_expired")
    assert details == [
        ("duplicates", "u1", "accepted 2 times: by primary at 0.60 s (250 lost), by backup at 2.60 s"),
        ("duplicates", "u4", "accepted 2 times: by relay at 2.12 s, by primary at 2.30 s"),
        ("permanent_failures_retried", "u3",
         "5xx from primary at 1.61 s, then attempted again; attempts: primary 1.61 s 550, relay 3.60 s 250"),
    ]


def test_vendor_events_in_any_order_give_the_same_result() -> None:
    a, b = analyze(STORY, SCENARIO), analyze(list(reversed(STORY)), SCENARIO)
    assert (a.metrics, a.by_mta, a.offenders) == (b.metrics, b.by_mta, b.offenders)


def received(t: float, vendor: str, conn: int, corr: str) -> Event:
    """mta.request.received: a request the vendor read and never answered (go_dark hang or reset)."""
    return ev(t, f"mta/{vendor}", "mta.request.received", corr, conn=conn, txn=1, rcpt=f"{corr}@users.drill.test",
              api="sendgrid", endpoint="send", behavior="go_dark")


def test_requests_a_vendor_never_answered_are_attempts() -> None:
    """u1: two hung requests on the primary (the client timed out after 1 s), then the backup accepts it;
    u2: one reset request and nothing else. Ground truth: 4 attempts for 2 messages, u1's intervals 1.0, 1.5."""
    story = [
        ev(10.0, "run", "run.phase.changed", phase="load", load_t0_s=10.0),
        request(10.5, "u1"), request(10.6, "u2"),
        received(10.5, "primary", 1, "u1"), received(11.5, "primary", 2, "u1"),
        *api(13.0, "backup", 1, "u1", 250, 200),
        received(10.6, "primary", 3, "u2"),
        ev(20.0, "run", "run.phase.changed", phase="drain"),
    ]
    scenario = {"duration_s": 10, "time_scale": 1, "load": {"classes": [{"name": "otp", "ttl_s": 30}]},
                "vendors": [{"name": "primary", "api": "sendgrid"}, {"name": "backup", "api": "ses"}]}
    for events in (story, list(reversed(story))):
        a = analyze(events, scenario)
        m = a.metrics
        assert {k: m[k] for k in ("messages_requested", "delivered", "undelivered", "attempts_total",
                                  "retry_amplification", "duplicates", "deferred_ratio")} == {
            "messages_requested": 2, "delivered": 1, "undelivered": 1, "attempts_total": 4,
            "retry_amplification": 2.0, "duplicates": 0, "deferred_ratio": 0.0}
        assert sorted(a.retry_intervals_s) == pytest.approx([1.0, 1.5])
        assert (a.by_mta["primary"]["attempts_total"], a.by_mta["backup"]["attempts_total"]) == (3, 1)
        assert [o.detail for o in a.offenders if o.rule == "undelivered"] == ["attempts: primary 0.60 s 0"]
