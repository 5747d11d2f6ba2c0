"""Webhook configuration (validated, every problem with its path), the vendors' retry schedules, and the webhook
metrics computed exactly on a hand-made event log."""

from __future__ import annotations

import random

import pytest
from maildrill.fake_mta.config import ConfigError, parse_fleet
from maildrill.fake_mta.vendors.webhooks.dispatcher import formats
from maildrill.fake_mta.vendors.webhooks.format import Notice
from maildrill.fake_mta.webhook_spec import WebhookSpec
from maildrill.harness.analysis import METRICS
from maildrill.harness.analysis.webhooks import WEBHOOK_METRIC_NAMES, webhook_metrics
from maildrill.harness.events import Event, EventKind


def problems(vendor: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_fleet({"vendors": [vendor]})
    return str(info.value)


def test_bad_webhook_configs_name_the_field_and_the_fix():
    assert problems({"name": "p", "api": "sendgrid", "webhooks": {
        "url": "hooks", "loss": 1.5, "lag_s": {"distribution": "uniform", "min_s": 5, "max_s": 1},
        "events": ["delivered", "opened"]}}) == (
        "fleet config: 4 problems\n"
        "  vendors[0].webhooks.url = 'hooks': must be a path on the system under test (starting with '/') or a full "
        "http(s):// URL\n"
        "  vendors[0].webhooks.events[1] = 'opened': must be 'processed', 'deferred', 'delivered', 'bounce' or "
        "'dropped'\n"
        "  vendors[0].webhooks.lag_s: max_s (1) must be >= min_s (5)\n"
        "  vendors[0].webhooks.loss = 1.5: must be <= 1")
    assert problems({"name": "p", "api": "postmark", "webhooks": {"url": "/h", "events": ["processed"],
                                                                 "secret": "x"}}) == (
        "fleet config: 1 problem\n"
        "  vendors[0]: webhooks.events: postmark sends no ['processed'] webhook; it sends ['delivered', 'bounce']; "
        "webhooks.secret: postmark webhooks carry no shared-secret signature here; remove it (Postmark: use "
        "`headers` for basic auth or a custom header)")
    assert "a Resend (Svix) endpoint secret is 'whsec_' followed by base64" in problems(
        {"name": "r", "api": "resend", "webhooks": {"url": "/h", "secret": "nope"}})
    assert problems({"name": "m", "api": "mailgun", "webhooks": {"url": "/h", "lag_s": {"median_s": 3}}}) == (
        "fleet config: 1 problem\n"
        "  vendors[0].webhooks.lag_s: a lag needs a `distribution`; one of ['fixed', 'uniform', 'lognormal']")


def test_webhook_pause_is_a_vendor_behaviour_only():
    msg = problems({"name": "p", "api": "sendgrid", "behaviors": [{"kind": "webhook_pause", "probability": 0.5}]})
    assert msg.endswith("webhook_pause pauses every matching webhook; remove probability (use match_rcpt)")
    with pytest.raises(ConfigError) as info:
        parse_fleet({"mtas": [{"name": "m", "behaviors": [{"kind": "webhook_pause"}]}]})
    assert "webhook_pause is for HTTP vendors with webhooks; an MTA sends none" in str(info.value)


def _notice(event: str = "delivered") -> Notice:
    return Notice(webhook=1, copy=0, event=event, message_id="m", rcpt="a@b", sender=None, corr=None, accepted_t=0,
                  occurred=0, event_id="e")


@pytest.mark.parametrize(("api", "delays", "stop"), [
    ("sendgrid", [60, 120, 240, 480, 960, 1920] + [3600] * 22, None),
    ("ses", [20, 20, 20], None),
    ("postmark", [60, 300, 600, 600, 600, 900, 1800, 3600, 7200, 21600], 403),
    ("mailgun", [300, 600, 900, 3600, 7200, 14400], 406),
    ("resend", [5, 300, 1800, 7200, 18000, 36000, 36000], None),
])
def test_each_vendor_retries_on_its_own_schedule(api, delays, stop):
    fmt = formats()[api](WebhookSpec(url="/h"), random.Random(0), "v")
    n = _notice("bounce")
    got = []
    attempt = 1
    while isinstance(d := fmt.next_delay_s(n, attempt, 500), float):
        got.append(d)
        attempt += 1
    assert got == delays
    assert d == "retries_exhausted"
    if stop is not None:
        assert fmt.next_delay_s(n, 1, stop) == "refused"
    assert fmt.next_delay_s(n, 1, None) == delays[0]  # a timeout or connection error is retried too


def test_mailgun_never_retries_delivered():
    fmt = formats()["mailgun"](WebhookSpec(url="/h"), random.Random(0), "v")
    assert fmt.next_delay_s(_notice("delivered"), 1, 500) == "not_retried"
    assert fmt.next_delay_s(_notice("delivered"), 1, 406) == "refused"


def ev(t: float, kind: str, **d) -> Event:
    return Event(t, "mta/sg", kind, d.pop("corr", None), d)


def test_webhook_metrics_exact_on_a_known_log():
    a = {"message_id": "m1", "rcpt": "u1@x"}
    b = {"message_id": "m2", "rcpt": "u2@x"}
    c = {"message_id": "m3", "rcpt": "u3@x"}
    events = [
        ev(1.0, "mta.message.accepted", **a), ev(1.0, "mta.message.accepted", **b),
        ev(2.0, "mta.message.accepted", **c),
        ev(1.5, "mta.webhook.sent", **a, webhook=1, copy=0, attempt=1),  # 503, then 200 at 4.0: lag 3.0
        ev(1.6, "mta.webhook.answered", **a, webhook=1, copy=0, attempt=1, status=503),
        ev(3.9, "mta.webhook.sent", **a, webhook=1, copy=0, attempt=2),
        ev(4.0, "mta.webhook.answered", **a, webhook=1, copy=0, attempt=2, status=200),
        ev(5.0, "mta.webhook.sent", **a, webhook=1, copy=1, attempt=1),  # the duplicate, delivered too
        ev(5.1, "mta.webhook.answered", **a, webhook=1, copy=1, attempt=1, status=204),
        ev(2.0, "mta.webhook.sent", **b, webhook=2, copy=0, attempt=1),  # lag 1.5
        ev(2.5, "mta.webhook.answered", **b, webhook=2, copy=0, attempt=1, status=200),
        ev(2.0, "mta.webhook.dropped", **c, webhook=3, copy=0, attempt=0, reason="loss"),
        ev(2.0, "mta.webhook.sent", **c, webhook=4, copy=0, attempt=1),
        ev(12.0, "mta.webhook.failed", **c, webhook=4, copy=0, attempt=1, error="timeout"),
        ev(12.0, "mta.webhook.dropped", **c, webhook=4, copy=0, attempt=1, reason="retries_exhausted"),
        ev(0.5, "mta.webhook.sent", event="SubscriptionConfirmation", attempt=1),  # not a delivery event
    ]
    sut_side = {"duplicates_failover_after_silence": 0, "late_webhooks_acted_on": None}  # one vendor, no decisions
    assert webhook_metrics(events) == {"webhook_lag_p50_s": 1.5, "webhook_lag_p99_s": 3.0, "webhooks_sent": 4,
                                       "webhooks_lost": 2, "webhook_retries": 1, "webhook_duplicates_delivered": 1,
                                       **sut_side}
    assert webhook_metrics(events, time_scale=0.5) == {
        "webhook_lag_p50_s": 3.0, "webhook_lag_p99_s": 6.0, "webhooks_sent": 4, "webhooks_lost": 2,
        "webhook_retries": 1, "webhook_duplicates_delivered": 1, **sut_side}
    assert webhook_metrics([ev(1.0, "mta.message.accepted", **a)]) == {}
    assert webhook_metrics(list(reversed(events))) == webhook_metrics(events)


def _silence_log() -> list[Event]:
    """Two vendors, one message per case; the comment says whether the case is a failover during silence."""
    def acc(t: float, src: str, corr: str) -> Event:
        return Event(t, f"mta/{src}", "mta.message.accepted", corr, {"message_id": f"{src}-{corr}", "rcpt": corr})

    n = iter(range(1, 100))

    def hook(t: float, src: str, corr: str, status: int) -> list[Event]:
        d = {"message_id": f"{src}-{corr}", "rcpt": corr, "webhook": next(n), "copy": 0, "attempt": 1}
        return [Event(t - 0.1, f"mta/{src}", "mta.webhook.sent", corr, d),
                Event(t, f"mta/{src}", "mta.webhook.answered", corr, {**d, "status": status})]

    def decision(t: float, kind: str, corr: str, owner: str, late: bool) -> Event:
        return Event(t, "sut/mailer", kind, corr, {"vendor": "sg", "message_id": f"sg-{corr}", "owner": owner,
                                                   "late": late, "event": "delivered"})

    return [
        acc(1, "sg", "c1"), *hook(2, "sg", "c1", 200), acc(5, "ses", "c1"),  # reported before the backup: no
        acc(1, "sg", "c2"), acc(4, "ses", "c2"), *hook(10, "sg", "c2", 200),  # reported after the backup: yes
        acc(1, "sg", "c3"), acc(3, "ses", "c3"),  # never reported: yes
        acc(1, "sg", "c4"), *hook(2, "sg", "c4", 503), acc(5, "ses", "c4"), *hook(9, "sg", "c4", 200),  # a 503: yes
        acc(1, "sg", "c5"), acc(2, "sg", "c5"),  # accepted twice by the same vendor: no
        acc(1, "ses", "c6"), *hook(1.5, "ses", "c6", 204), acc(2, "sg", "c6"),  # the first one reported: no
        acc(1, "ses", "c7"), acc(3, "sg", "c7"),  # either direction: yes
        acc(2, "sg", "c8"), acc(2, "ses", "c8"),  # at the same instant, neither after the other: no
        acc(1, "sg", "c9"), *hook(1.5, "ses", "c9", 200), acc(3, "ses", "c9"),  # the backup's own webhook: yes
        decision(10, "sut.webhook.applied", "c2", "ses", True), decision(9, "sut.webhook.applied", "c4", "ses", True),
        decision(2, "sut.webhook.applied", "c1", "sg", False),
        decision(11, "sut.webhook.ignored", "c3", "ses", True),  # ignored: not acted on
        decision(12, "sut.webhook.ignored", "c9", None, False),
    ]


def test_failover_after_silence_and_late_webhooks_exact_and_order_free():
    from maildrill.harness.analysis.webhooks import WebhookTally

    events = _silence_log()
    tally = WebhookTally()
    for e in events:
        tally.add(e.kind, e.source, e.t_s, e.data, e.corr)
    assert tally.failed_over_in_silence() == ["c2", "c3", "c4", "c7", "c9"]
    assert tally.failed_over_in_silence_by_receiver() == {"mta/ses": 4, "mta/sg": 1}  # c7 went to sg
    got = webhook_metrics(events)
    assert (got["duplicates_failover_after_silence"], got["late_webhooks_acted_on"]) == (5, 2)
    rng = random.Random(16)
    for _ in range(5):
        shuffled = list(events)
        rng.shuffle(shuffled)
        assert webhook_metrics(shuffled) == got
    # no decisions recorded by the SUT: the late count is unknown, not 0
    assert webhook_metrics([e for e in events if not e.kind.startswith("sut.")])["late_webhooks_acted_on"] is None


def test_the_join_feeds_the_sut_side_metrics_to_the_analysis():
    from maildrill.harness.analysis import analyze

    a = analyze(_silence_log(), {"vendors": [{"name": "sg"}, {"name": "ses"}, {"name": "quiet"}]})
    assert (a.metrics["duplicates_failover_after_silence"], a.metrics["late_webhooks_acted_on"]) == (5, 2)
    assert {name: row["duplicates_failover_after_silence"] for name, row in a.by_mta.items()} == {
        "ses": 4, "sg": 1, "quiet": 0}
    # without webhooks the metric is not measured, for the run or any MTA
    plain = analyze([e for e in _silence_log() if e.kind == "mta.message.accepted"])
    assert "duplicates_failover_after_silence" not in plain.metrics
    assert all("duplicates_failover_after_silence" not in row for row in plain.by_mta.values())


def test_webhook_names_are_declared():
    assert set(WEBHOOK_METRIC_NAMES) <= set(METRICS)
    assert {"mta.webhook.sent", "mta.webhook.answered", "mta.webhook.failed", "mta.webhook.held",
            "mta.webhook.dropped", "mta.webhook.subscription_confirmed", "sut.webhook.applied",
            "sut.webhook.ignored"} <= {k.value for k in EventKind}


SCENARIO = """\
version: 1
name: webhooks
duration_s: 60
time_scale: 0.1
vendors:
  - name: primary
    api: sendgrid
    webhooks: {url: /hooks/sendgrid, lag_s: {distribution: uniform, min_s: 1, max_s: 30}, timeout_s: 5,
               time_scale: 0.5}
sut: {url: "http://127.0.0.1:8000"}
load:
  shape: {kind: constant, rps: 5}
  classes:
    - {name: otp, ttl_s: 30, request: {method: POST, path: /otp}}
timeline:
  - {at_s: 10, vendor: primary, set: [{kind: webhook_pause, mode: hold}], for_s: 20}
"""


def test_the_scenario_time_scale_compresses_webhook_lags_and_retries_not_the_sut_timeout():
    from maildrill.harness.scenario import parse_scenario_text, scaled

    s = parse_scenario_text(SCENARIO)
    r = scaled(s)
    wh = r.vendors[0].webhooks
    assert (wh.time_scale, wh.timeout_s, wh.lag_s) == (pytest.approx(0.05), 5, s.vendors[0].webhooks.lag_s)
    assert (r.timeline[0].at_s, r.timeline[0].for_s) == (pytest.approx(1.0), pytest.approx(2.0))
    assert r.timeline[0].set[0].kind == "webhook_pause"


def test_a_webhook_path_without_a_sut_is_a_scenario_problem():
    from maildrill.harness.errors import ScenarioError
    from maildrill.harness.scenario import parse_scenario_text

    text = SCENARIO.replace('sut: {url: "http://127.0.0.1:8000"}\n', "").replace(
        "request: {method: POST, path: /otp}", "smtp: {host: 127.0.0.1, port: 2525}")
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, source="w.yaml")
    assert str(info.value) == (
        "w.yaml: 1 problem\n"
        "  vendors[0].webhooks.url = '/hooks/sendgrid': is a path on the SUT, and the scenario has no "
        "`sut`; add one, or give a full http(s):// URL (line 8)")


def test_a_bad_lag_in_a_scenario_is_reported_at_its_path_without_the_distribution_tag():
    from maildrill.harness.errors import ScenarioError
    from maildrill.harness.scenario import parse_scenario_text

    text = SCENARIO.replace("lag_s: {distribution: uniform, min_s: 1, max_s: 30}",
                            "lag_s: {distribution: uniform, min_s: 1, max_s: -1}")
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, source="w.yaml")
    assert str(info.value) == "w.yaml: 1 problem\n  vendors[0].webhooks.lag_s.max_s = -1: must be >= 0 (line 8)"
