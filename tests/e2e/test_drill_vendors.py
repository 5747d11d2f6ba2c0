"""A whole drill against fake email-API vendors: a SUT using the SendGrid SDK as primary and Amazon SES (boto3
`sesv2`) as backup, the primary losing its responses for a while, and the exact deliveries and duplicates.

The counts are fixed by the scenario, not by timing: the load comes in three bursts of 10 requests
(open-model arrivals, exact), and the primary's `go_dark lose_response` window starts 2.7 s after the
first burst's last request and ends 2 s before the third burst (3.2 s after the second's last). Every
message is sent to the primary first; the 10 of the middle burst are stored there with the response lost,
so the SDK raises, the SUT fails over to SES and each is delivered twice.
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
SUT_API_APP = Path(__file__).with_name("sut_api_app.py")
pytestmark = pytest.mark.slow

SCENARIO = """\
version: 1
name: api-failover
seed: 3
duration_s: 16
drain_timeout_s: 60
vendors:
  - {name: primary, api: sendgrid}
  - {name: backup, api: ses}
sut:
  command: ["python", "SUT_API_APP"]
  ready: {http: /healthz, timeout_s: 60}
  env: {SUT_RETRY_S: "0.2", SUT_WORKERS: "4"}
  queue_depth: {http: /metrics, metric: sut_queue_depth}
load:
  shape:
    kind: step
    steps: [{at_s: 0, rps: 5}, {at_s: 2, rps: 0}, {at_s: 6.5, rps: 5}, {at_s: 8.5, rps: 0},
            {at_s: 13.5, rps: 5}, {at_s: 15.5, rps: 0}]
  classes:
    - name: otp
      ttl_s: 30
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
timeline:
  - {at_s: 4.5, vendor: primary, set: [{kind: go_dark, mode: lose_response}], for_s: 7}
thresholds:
  delivered[primary]: {min: 30}
  duplicates[backup]: {max: 0}
"""


def drill(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], Path, str]:
    scenario = tmp_path / "api-failover.yaml"
    scenario.write_text(text.replace("SUT_API_APP", str(SUT_API_APP)))
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    run_dir = next(d for d in out.iterdir() if d.is_dir() and (d / "manifest.json").exists())
    return proc, run_dir, (run_dir / "sut" / "stderr.log").read_text()


def test_sendgrid_primary_loses_responses_and_the_ses_backup_duplicates_exactly_those(tmp_path: Path) -> None:
    proc, run_dir, sut_log = drill(tmp_path, SCENARIO)
    # exit 1: the thresholds held the duplicates at the backup to 0, and there are 10
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{sut_log[-3000:]}"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    read = EventStore(run_dir / "events").read()
    assert read.problems == []
    events = read.events
    corrs = [f"u{k:06d}" for k in range(30)]
    dark = corrs[10:20]  # the middle burst

    requests = [e for e in events if e.kind == "load.request.completed"]
    assert sorted(e.corr for e in requests) == corrs
    assert {(e["status"], e["ok"]) for e in requests} == {(202, True)}

    # every message at the primary once; the middle burst's responses lost; exactly those again at the backup
    accepted = [e for e in events if e.kind == "mta.message.accepted"]
    by_vendor = {v: Counter(e.corr for e in accepted if e.source == f"mta/{v}") for v in ("primary", "backup")}
    assert by_vendor == {"primary": Counter(corrs), "backup": Counter(dark)}
    lost = sorted({e.corr for e in accepted if e.source == "mta/primary" and e.get("ack") == "lost"}
                  | {e.corr for e in events if e.kind == "mta.message.ack_lost" and e.source == "mta/primary"})
    assert lost == dark
    api_replies = Counter((e.source, e["verb"], e["code"], e.get("http_status")) for e in events
                          if e.kind == "mta.reply.sent")
    assert api_replies == {("mta/primary", "API", 250, 202): 20, ("mta/backup", "API", 250, 200): 10}

    fired = [(e.kind, e["target"], e["what"]) for e in events if e.kind in ("run.action.fired", "run.action.undone")]
    assert fired == [("run.action.fired", "vendor/primary", "set go_dark(lose_response)"),
                     ("run.action.undone", "vendor/primary", "set go_dark(lose_response)")]
    # the SDKs were pointed at the fakes by MAILDRILL_API_<NAME>_URL; MAILDRILL_API_URL is the first vendor's
    banner = (run_dir / "sut" / "stdout.log").read_text().splitlines()[0]
    primary_url = banner.split("primary=")[1].split()[0]
    assert banner.split("default=")[1] == primary_url and primary_url.startswith("http://127.0.0.1:")
    assert sut_log.count(" primary failed: ") == 10 and sut_log.count(" backup sent: ses ") == 10

    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["metrics"]
    assert {k: m[k] for k in ("messages_requested", "delivered", "undelivered", "attempts_total", "duplicates",
                              "duplicate_messages", "duplicates_after_lost_ack", "duplicates_failover",
                              "permanent_failures_retried", "otp_expired")} == {
        "messages_requested": 30, "delivered": 30, "undelivered": 0, "attempts_total": 40, "duplicates": 10,
        "duplicate_messages": 10, "duplicates_after_lost_ack": 10, "duplicates_failover": 0,
        "permanent_failures_retried": 0, "otp_expired": 0}
    scoped = {v: {k: summary["by_mta"][v][k] for k in ("delivered", "attempts_total", "duplicates")}
              for v in ("primary", "backup")}
    assert scoped == {"primary": {"delivered": 30, "attempts_total": 30, "duplicates": 0},
                      "backup": {"delivered": 10, "attempts_total": 10, "duplicates": 10}}
    checks = {c["threshold"]: (c["value"], c["passed"]) for c in summary["verdict"]["checks"]}
    assert checks == {"delivered[primary]": (30, True), "duplicates[backup]": (10, False)}
    assert [(w["target"], w["what"]) for w in summary["windows"]] == [("vendor/primary",
                                                                      "set go_dark(lose_response)")]


PROXIED = SCENARIO.replace("""timeline:
  - {at_s: 4.5, vendor: primary, set: [{kind: go_dark, mode: lose_response}], for_s: 7}""", """proxies:
  - {name: to-sendgrid, upstream: primary}
timeline:
  - {at_s: 4.5, proxy: to-sendgrid, enabled: false, for_s: 7}""").replace("delivered[primary]: {min: 30}",
                                                                         "delivered[primary]: {min: 20}")


def test_a_proxy_in_front_of_the_primary_refuses_and_the_backup_takes_exactly_that_burst(tmp_path: Path) -> None:
    """The SUT reaches SendGrid through the fault proxy (MAILDRILL_API_PRIMARY_URL is the proxy's address);
    disabling the proxy refuses the connection before anything is stored, so failover duplicates nothing."""
    proc, run_dir, sut_log = drill(tmp_path, PROXIED)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{sut_log[-3000:]}"
    events = EventStore(run_dir / "events").read().events
    corrs = [f"u{k:06d}" for k in range(30)]
    accepted = [e for e in events if e.kind == "mta.message.accepted"]
    by_vendor = {v: Counter(e.corr for e in accepted if e.source == f"mta/{v}") for v in ("primary", "backup")}
    assert by_vendor == {"primary": Counter(corrs[:10] + corrs[20:]), "backup": Counter(corrs[10:20])}
    proxy = [e for e in events if e.kind == "proxy.created"]
    assert len(proxy) == 1 and proxy[0]["proxy"] == "to-sendgrid"
    banner = (run_dir / "sut" / "stdout.log").read_text().splitlines()[0]
    primary_url = banner.split("primary=")[1].split()[0]
    assert primary_url == f"http://{proxy[0]['listen']}"  # the SDK talks to the proxy, not to the vendor
    assert sut_log.count(" primary failed: URLError") == 10
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["metrics"]
    assert {k: m[k] for k in ("delivered", "undelivered", "attempts_total", "duplicates", "otp_expired")} == {
        "delivered": 30, "undelivered": 0, "attempts_total": 30, "duplicates": 0, "otp_expired": 0}
    checks = {c["threshold"]: (c["value"], c["passed"]) for c in summary["verdict"]["checks"]}
    assert checks == {"delivered[primary]": (20, True), "duplicates[backup]": (0, True)}
