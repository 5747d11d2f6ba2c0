"""Scenario files with fake email-API vendors: the vocabulary, cross-references, time scale, SUT environment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from maildrill.harness.clock import MonotonicClock
from maildrill.harness.errors import ScenarioError
from maildrill.harness.run.drill import api_env, with_address
from maildrill.harness.run.timeline import Timeline
from maildrill.harness.scenario import parse_scenario_text, scaled
from maildrill.harness.scenario.loading import known_metrics
from maildrill.harness.store import EventStore

VENDORS = """\
version: 1
name: api-failover
duration_s: 60
mtas:
  - name: relay
vendors:
  - name: primary
    api: sendgrid            # sendgrid | ses | postmark | mailgun | resend
    behaviors: [{kind: throttle, rate_per_s: 10, burst: 10}]
  - name: backup-ses
    api: ses
    behaviors: [{kind: tarpit, delay_s: 2}]
proxies:
  - {name: primary, upstream: primary}
load:
  shape: {kind: constant, rps: 5}
  classes:
    - {name: otp, ttl_s: 30, smtp: {host: 127.0.0.1, port: 2525}}
timeline:
  - {at_s: 10, vendor: primary, set: [{kind: go_dark, mode: hang}], for_s: 20}
  - {at_s: 12, mta: relay, set: [{kind: go_dark, mode: lose_ack}]}
  - {at_s: 14, proxy: primary, toxic: {type: latency, attributes: {latency: 500}}, for_s: 4}
thresholds:
  duplicates[primary]: {max: 0}
  delivered[backup-ses]: {min: 1}
"""


def test_vendors_load_as_written_beside_mtas() -> None:
    s = parse_scenario_text(VENDORS)
    assert [(v.name, v.api) for v in s.vendors] == [("primary", "sendgrid"), ("backup-ses", "ses")]
    assert [b.kind for b in s.vendors[0].behaviors] == ["throttle"]
    assert [m.name for m in s.mtas] == ["relay"]
    assert [a.target for a in s.timeline] == ["vendor/primary", "mta/relay", "proxy/primary"]
    assert [(b.kind, str(b.mode)) for b in s.timeline[0].set or []] == [("go_dark", "hang")]
    assert s.proxy_for("primary") is not None and s.proxy_for("backup-ses") is None
    assert parse_scenario_text(json.dumps(s.to_plain())) == s  # the plain form reads back to the same model


def test_a_drill_may_have_vendors_and_no_mta() -> None:
    text = VENDORS.replace("mtas:\n  - name: relay\n", "").replace(
        "  - {at_s: 12, mta: relay, set: [{kind: go_dark, mode: lose_ack}]}\n", "")
    s = parse_scenario_text(text)
    assert (s.mtas, [v.name for v in s.vendors]) == ([], ["primary", "backup-ses"])


def test_a_drill_needs_some_receiver() -> None:
    text = VENDORS.split("proxies:")[0].replace("mtas:\n  - name: relay\n", "").split("vendors:")[0]
    text += "load:\n  shape: {kind: constant, rps: 5}\n  classes: [{name: otp, smtp: {host: 127.0.0.1, port: 25}}]\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text)
    assert [str(p) for p in info.value.problems] == [
        "(top level): give at least one receiver: `mtas:` (fake SMTP servers) and/or `vendors:` (fake email APIs)"]


BAD = """\
version: 1
name: broken
duration_s: 10
mtas: [{name: relay}, {name: shared}]
vendors:
  - {name: shared, api: sendgrid}
  - {name: primary, api: smtp}
  - {name: primary, api: ses}
proxies:
  - {name: p1, upstream: nowhere}
load:
  shape: {kind: constant, rps: 5}
  classes: [{name: otp, smtp: {host: 127.0.0.1, port: 2525}}]
timeline:
  - {at_s: 1, vendor: relay, set: [{kind: accept}]}
  - {at_s: 2, mta: primary, set: [{kind: accept}]}
  - {at_s: 3, vendor: primary, set: [{kind: go_dark, mode: hang_data}]}
  - {at_s: 4, vendor: primary, mta: relay, set: [{kind: accept}]}
  - {at_s: 5, vendor: primary, toxic: {type: latency}}
thresholds:
  duplicates[ghost]: {max: 0}
"""


def test_every_vendor_mistake_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(BAD, source="bad.yaml")
    got = [str(p) for p in info.value.problems]
    want = [
        "vendors[1].api = 'smtp': must be 'sendgrid', 'ses', 'postmark', 'mailgun' or 'resend' (line 7)",
        "timeline[2].set: [0] go_dark mode 'hang_data' is SMTP-only; for an HTTP vendor use 'hang' (modes: refuse, "
        "hang, reset, lose_response, blackhole) (line 17)",
        "timeline[3]: name exactly one target: `mta: NAME`, `vendor: NAME`, `proxy: NAME` or `sut: crash` (line 18)",
        "timeline[4]: a vendor action needs `set: [behaviours]` (and no `toxic`/`enabled`) (line 19)",
        "vendors[0].name = 'shared': an MTA has this name; MTA and vendor names share one namespace (events, "
        "proxies, thresholds): rename one (line 6)",
        "vendors[2].name = 'primary': vendor names must be unique; rename this one (line 8)",
        "proxies[0].upstream = 'nowhere': no such MTA or vendor; MTAs: ['relay', 'shared'], vendors: ['primary'] "
        "(line 10)",
        "timeline[0].vendor = 'relay': no such vendor; defined: ['primary'] (that is an MTA: write `mta: NAME`) "
        "(line 15)",
        "timeline[1].mta = 'primary': no such MTA; defined: ['relay', 'shared'] (that is a vendor: write "
        "`vendor: NAME`) (line 16)",
    ]
    if known_metrics() is not None:
        want.append("thresholds.duplicates[ghost]: unknown scope 'ghost': duplicates can be scoped by MTA/vendor or "
                    "class; classes: ['otp'], MTAs: ['relay', 'shared'], vendors: ['primary'] (line 21)")
    assert sorted(got) == sorted(want)


def test_an_mta_action_keeps_the_mta_modes() -> None:
    text = VENDORS.replace("{kind: go_dark, mode: lose_ack}", "{kind: go_dark, mode: lose_response}")
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text)
    assert [str(p) for p in info.value.problems] == [
        "timeline[1].set: [0] go_dark mode 'lose_response' is for HTTP vendors; the SMTP form is 'lose_ack' (line 21)"]


def test_what_only_ses_has_is_checked_against_the_vendor_an_action_names() -> None:
    quota = "[{kind: throttle, rate_per_s: 5, daily_quota: 100}]"
    text = VENDORS.replace("thresholds:", f"""  - {{at_s: 20, vendor: backup-ses, set: {quota}}}
  - {{at_s: 21, vendor: primary, set: {quota}}}
thresholds:""")
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text)
    assert [str(p) for p in info.value.problems] == [
        "timeline[4].set: [0] throttle daily_quota is SES's daily sending quota; a sendgrid vendor has none (line 24)"]


def test_time_scale_scales_vendor_behaviours_and_actions() -> None:
    r = scaled(parse_scenario_text(VENDORS.replace("duration_s: 60", "duration_s: 60\ntime_scale: 0.1")))
    assert r.vendors[0].behaviors[0].rate_per_s == pytest.approx(100)
    assert r.vendors[1].behaviors[0].delay_s == pytest.approx(0.2)
    assert (r.timeline[0].at_s, r.timeline[0].for_s) == pytest.approx((1, 2))


def test_the_sut_gets_each_vendor_url_and_the_first_as_the_default() -> None:
    assert api_env("primary", "http://127.0.0.1:4001", first=True) == {
        "MAILDRILL_API_PRIMARY_URL": "http://127.0.0.1:4001", "MAILDRILL_API_URL": "http://127.0.0.1:4001"}
    assert api_env("backup-ses", "http://127.0.0.1:4002/", first=False) == {
        "MAILDRILL_API_BACKUP_SES_URL": "http://127.0.0.1:4002/"}
    # through the proxy in front of it: the same URL at the proxy's address
    assert with_address("http://127.0.0.1:4001/v3", "127.0.0.1", 5555) == "http://127.0.0.1:5555/v3"
    assert with_address("http://127.0.0.1:4001", "::1", 5555) == "http://[::1]:5555"


class FakeReceiver:
    def __init__(self) -> None:
        self.behaviors: list[Any] = ["initial"]
        self.calls: list[list[Any]] = []

    def set_behaviors(self, behaviors: list[Any], *, by: str = "api") -> None:
        assert by == "timeline"
        self.behaviors = behaviors
        self.calls.append(behaviors)


def test_a_vendor_action_fires_is_recorded_and_undone(tmp_path: Path) -> None:
    scenario = scaled(parse_scenario_text(VENDORS.replace("duration_s: 60", "duration_s: 60\ntime_scale: 0.01")))
    clock = MonotonicClock()
    writer = EventStore(tmp_path).writer("run", "run", clock)
    vendor, relay = FakeReceiver(), FakeReceiver()
    timeline = Timeline(list(scenario.timeline[:2]), writer=writer, clock=clock, mtas={"relay": relay},
                        vendors={"primary": vendor}, proxy=None, on_degraded=lambda c, r: None)

    async def go() -> None:
        timeline.start(clock.now())
        while len(vendor.calls) < 2 or not relay.calls:
            await asyncio.sleep(0.005)
        await timeline.stop()

    asyncio.run(asyncio.wait_for(go(), 10))
    assert [(b.kind, str(b.mode)) for b in vendor.calls[0]] == [("go_dark", "hang")]
    assert vendor.calls[1] == ["initial"]  # undone after for_s
    assert [(b.kind, str(b.mode)) for b in relay.calls[0]] == [("go_dark", "lose_ack")]
    got = [(e.kind, e["action"], e["target"], e["what"]) for e in EventStore(tmp_path).events()]
    assert got == [("run.action.fired", 0, "vendor/primary", "set go_dark(hang)"),
                   ("run.action.fired", 1, "mta/relay", "set go_dark(lose_ack)"),
                   ("run.action.undone", 0, "vendor/primary", "set go_dark(hang)")]


def test_the_documented_example_with_a_vendor_validates() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    s = parse_scenario_text(example)
    assert [(v.name, v.api) for v in s.vendors] == [("api-primary", "sendgrid")]
    assert s.timeline[-1].target == "vendor/api-primary"
