"""A whole drill with SendGrid's Event Webhook: the SUT sends with the SendGrid SDK and verifies each webhook
with the sendgrid package's EventWebhook; the vendor's webhooks.url is a path the drill resolves against the
SUT; a timeline `webhook_pause` (hold) makes the first burst's webhooks late while sends are still accepted.

Counts are fixed by the scenario: two bursts of 10 requests (t 0-1 s and 4-5 s), a fixed 0.5 s lag, the pause
from 0 to 3 s. The first burst's webhooks are held and go out at about 3 s; the second's come 0.5 s after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from maildrill.harness.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
SUT_APP = Path(__file__).with_name("sut_webhook_app.py")
pytestmark = pytest.mark.slow

SCENARIO = """\
version: 1
name: api-webhooks
seed: 5
duration_s: 6
drain_timeout_s: 20
vendors:
  - name: primary
    api: sendgrid
    webhooks:
      url: /hooks/sendgrid
      events: [delivered]
      lag_s: {distribution: fixed, value_s: 0.5}
      secret: drill-signing-key
sut:
  command: ["python", "SUT_APP"]
  ready: {http: /healthz, timeout_s: 60}
load:
  shape:
    kind: step
    steps: [{at_s: 0, rps: 10}, {at_s: 1, rps: 0}, {at_s: 4, rps: 10}, {at_s: 5, rps: 0}]
  classes:
    - name: otp
      ttl_s: 30
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
timeline:
  - {at_s: 0, vendor: primary, set: [{kind: webhook_pause, mode: hold}], for_s: 3}
thresholds:
  webhooks_lost: {max: 0}
  webhook_lag_p99_s: {max: 1}
"""


def test_signed_webhooks_reach_the_sut_late_while_paused_and_the_metrics_say_so(tmp_path: Path) -> None:
    scenario = tmp_path / "api-webhooks.yaml"
    scenario.write_text(SCENARIO.replace("SUT_APP", str(SUT_APP)))
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    run_dir = next(d for d in out.iterdir() if d.is_dir() and (d / "manifest.json").exists())
    sut_out = (run_dir / "sut" / "stdout.log").read_text()
    sut_err = (run_dir / "sut" / "stderr.log").read_text()
    # exit 1: webhooks_lost held at 0, but the paused burst's lag is over 1 s
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{sut_err[-3000:]}"
    events = EventStore(run_dir / "events").read().events
    corrs = [f"u{k:06d}" for k in range(20)]
    assert sorted(e.corr for e in events if e.kind == "mta.message.accepted") == corrs
    wh = [e for e in events if e.kind.startswith("mta.webhook.")]
    assert Counter(e.kind for e in wh) == {"mta.webhook.held": 10, "mta.webhook.sent": 20,
                                           "mta.webhook.answered": 20}
    assert sorted(e.corr for e in wh if e.kind == "mta.webhook.held") == corrs[:10]
    assert {(e["status"], e["attempt"]) for e in wh if e.kind == "mta.webhook.answered"} == {(200, 1)}
    urls = {e["url"] for e in wh if e.kind == "mta.webhook.sent"}
    assert len(urls) == 1 and urls.pop().endswith("/hooks/sendgrid")
    # the SUT verified every one with SendGrid's helper
    assert "webhook signature invalid" not in sut_out
    assert sorted(line.split()[2] for line in sut_out.splitlines() if line.startswith("webhook delivered ")) == [
        f"{c}@users.drill.test" for c in corrs]
    m = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert {k: m[k] for k in ("webhooks_sent", "webhooks_lost", "webhook_retries",
                              "webhook_duplicates_delivered")} == {
        "webhooks_sent": 20, "webhooks_lost": 0, "webhook_retries": 0, "webhook_duplicates_delivered": 0}
    # the slowest: held from its acceptance until the pause was undone, then one POST; the median is an on-time one
    accepted = {e.corr: e.t_s for e in events if e.kind == "mta.message.accepted"}
    undone = next(e.t_s for e in events if e.kind == "run.action.undone")
    post_s = max(e["latency_ms"] for e in wh if e.kind == "mta.webhook.answered") / 1000
    held_waits = [undone - accepted[c] for c in corrs[:10]]
    assert min(held_waits) <= m["webhook_lag_p99_s"] <= max(held_waits) + post_s + 0.5  # + the loop's turn
    assert min(held_waits) > 1.5  # the first burst ended at 1 s, the pause at 3 s
    assert 0.5 <= m["webhook_lag_p50_s"] <= 0.5 + post_s + 0.5
    checks = {c["threshold"]: c["passed"] for c in json.loads((run_dir / "summary.json").read_text())[
        "verdict"]["checks"]}
    assert checks == {"webhooks_lost": True, "webhook_lag_p99_s": False}
