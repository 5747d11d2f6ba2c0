"""The reference mailer's policy flags, each drilled for real and checked on the metric it should move.

Every drill here is a real `maildrill run`: Locust load, the mailer as a subprocess, fake MTAs over TCP,
then the analysis and reports from the run directory. Ground truth comes from the scenario itself:
open-model arrivals make the requested correlation ids exact (rps x duration), and the recipients a
rule rejects are known from their ids.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from maildrill.harness.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
pytestmark = pytest.mark.slow


def drill(tmp_path: Path, scenario: Path, *sets: str, timeout_s: float = 240) -> tuple[int, Path, dict[str, Any]]:
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(out), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    run_dir = next(d for d in out.iterdir() if d.is_dir() and (d / "manifest.json").exists())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed", proc.stdout
    return proc.returncode, run_dir, summary


def mailer(*flags: str) -> str:
    return "sut.command=[python, -m, maildrill.examples.mailer, " + ", ".join(flags) + "]"


def failed_checks(summary: dict[str, Any]) -> set[str]:
    return {c["threshold"] for c in summary["verdict"]["checks"] if not c["passed"]}


def corrs(n: int) -> list[str]:
    return [f"u{k:06d}" for k in range(n)]


BOUNCES = """\
version: 1
name: bounces
seed: 5
duration_s: 6
drain_timeout_s: 30
mtas:
  - name: relay
    behaviors: [{kind: reject, reason: unknown_user, match_rcpt: "^u\\\\d*[27]@"}]
sut:
  command: [python, -m, maildrill.examples.mailer, --profile, hardened]
  ready: {http: /healthz, timeout_s: 20}
  queue_depth: {http: /metrics, metric: mailer_queue_depth}
load:
  shape: {kind: constant, rps: 5}
  classes:
    - name: receipt
      ttl_s: 600
      request: {method: POST, path: /password-reset, json: {email: "{recipient}"}}
thresholds:
  permanent_failures_retried: {max: 0}
"""


def test_retry_5xx_is_measured_as_exactly_the_bounced_messages_it_retried(tmp_path: Path) -> None:
    scenario = tmp_path / "bounces.yaml"
    scenario.write_text(BOUNCES)
    bounced = [c for c in corrs(30) if re.match(r"^u\d*[27]$", c)]  # 5 req/s x 6 s; ids ending in 2 or 7
    assert len(bounced) == 6

    code, run_dir, naive = drill(tmp_path / "naive", scenario, mailer("--profile", "naive", "--max-attempts", "3"))
    # the drill handed its seed to the SUT (MAILDRILL_SEED), and the mailer drew its jitter from it
    assert re.search(r"^mailer: listening on .* seed=5$", (run_dir / "sut" / "stdout.log").read_text(), re.M)
    assert naive["metrics"]["permanent_failures_retried"] == len(bounced)
    assert (naive["metrics"]["messages_requested"], naive["metrics"]["delivered"]) == (30, 24)
    assert code == 1 and failed_checks(naive) == {"permanent_failures_retried"}
    events = EventStore(run_dir / "events").events()
    retried = {e.corr for e in events if e.kind == "mta.reply.sent" and e["verb"] == "RCPT" and e["code"] == 550}
    assert sorted(retried) == bounced

    code, _, hardened = drill(tmp_path / "hardened", scenario)
    assert hardened["metrics"]["permanent_failures_retried"] == 0
    assert (hardened["metrics"]["delivered"], hardened["metrics"]["undelivered"]) == (24, 6)
    assert code == 0 and failed_checks(hardened) == set()


FAILOVER_LOSE_ACK = """\
version: 1
name: failover-lose-ack
seed: 31
duration_s: 8
drain_timeout_s: 20
mtas:
  - name: primary
    behaviors: [{kind: go_dark, mode: lose_ack, probability: 0.4}]
  - name: backup
sut:
  command: [python, -m, maildrill.examples.mailer]
  ready: {http: /healthz, timeout_s: 20}
  queue_depth: {http: /metrics, metric: mailer_queue_depth}
load:
  shape: {kind: constant, rps: 5}
  classes:
    - name: password_reset
      ttl_s: 300
      request: {method: POST, path: /password-reset, json: {email: "{recipient}"}}
thresholds:
  duplicates: {max: 0}
"""


@pytest.mark.parametrize("idempotency", [False, True], ids=["no-idempotency", "idempotency"])
def test_failover_after_a_lost_ack_duplicates_unless_the_sender_checks_the_message_id(tmp_path: Path,
                                                                                      idempotency: bool) -> None:
    scenario = tmp_path / "failover.yaml"
    scenario.write_text(FAILOVER_LOSE_ACK)
    flags = ["--profile", "hardened", "--primary", "primary", "--failover-to", "backup", "--failover-after", "1",
             "--idempotency" if idempotency else "--no-idempotency"]
    code, run_dir, summary = drill(tmp_path, scenario, mailer(*flags))
    events = EventStore(run_dir / "events").events()
    lost = [e.corr for e in events if e.kind == "mta.message.accepted" and e["ack"] == "lost"]
    assert len(lost) >= 5  # 40 messages, 40 % of first attempts lose their 250
    m = summary["metrics"]
    assert (m["messages_requested"], m["delivered"]) == (40, 40)
    if idempotency:
        assert (m["duplicates"], m["duplicate_messages"], code) == (0, 0, 0)
    else:
        # every lost 250 was sent again: the same Message-ID accepted twice, the second time after the lost ack
        assert m["duplicates"] == m["duplicates_after_lost_ack"] == len(lost)
        assert m["duplicate_messages"] == len(set(lost))
        assert code == 1 and failed_checks(summary) == {"duplicates"}


def test_priority_lanes_keep_otps_within_their_ttl_while_newsletters_back_up(tmp_path: Path) -> None:
    scenario = SCENARIOS / "priority-lanes-backlog.yaml"
    short = ["duration_s=10", "load.shape.rps=26"]  # 16/s more than the relay takes: a 15 s backlog by the end
    code, _, lanes = drill(tmp_path / "lanes", scenario, *short)
    assert code == 0, lanes["verdict"]
    otp, news = lanes["by_class"]["otp"], lanes["by_class"]["newsletter"]
    assert otp["latency_p99_s"] < 5 and otp["otp_expired"] == 0
    assert news["latency_p99_s"] > 5  # the backlog is real; it just waits behind the OTPs

    code, _, fifo = drill(tmp_path / "fifo", scenario, *short,
                          mailer("--profile", "hardened", "--rate-limit", "10/s", "--no-lanes"))
    assert code == 1
    assert fifo["by_class"]["otp"]["latency_p99_s"] > 5
    assert fifo["by_class"]["otp"]["otp_expired"] > 0
    assert {"latency_p99_s[otp]", "otp_expired_ratio[otp]"} <= failed_checks(fifo)


def test_fixed_interval_retries_synchronise_and_jittered_backoff_does_not(tmp_path: Path) -> None:
    """The demo's drill as `make demo` runs it: the naive mailer storms, the hardened one drains. The bounds are
    those of benchmarks/verdict_stability.py with margin (10 runs each beside a CPU hog: hardened
    retry_sync_index <= 0.27; naive 1.0 beside one hog, down to 0.62 at a load average of 20 — scheduling
    delays smear lock-step retries; the drill's own thresholds state theirs)."""
    scenario = SCENARIOS / "throttle-421-storm.yaml"
    code, _, naive = drill(tmp_path / "naive", scenario)
    code_h, _, hardened = drill(tmp_path / "hardened", scenario, mailer("--profile", "hardened"))
    n, h = naive["metrics"], hardened["metrics"]
    assert n["retry_sync_index"] > 0.5 and h["retry_sync_index"] <= 0.4  # either side of the threshold's 0.5
    assert n["retry_amplification"] > 3 * h["retry_amplification"]
    assert code == 1 and {"retry_sync_index", "otp_expired_ratio[otp]", "drain_s"} <= failed_checks(naive)
    assert code_h == 0, hardened["verdict"]
    assert (h["delivered"], h["undelivered"], h["duplicates"]) == (h["messages_requested"], 0, 0)


CRASH = """\
version: 1
name: crash-mid-drill
seed: 11
duration_s: 6
drain_timeout_s: 40
mtas:
  - name: relay
    behaviors: [{kind: tarpit, delay_s: 0.4, at: dot}]   # a slow 250, so sends are in flight at the kill
sut:
  command: [python, -m, maildrill.examples.mailer, --profile, hardened, --workers, "4", --lease, "2"]
  ready: {http: /healthz, timeout_s: 20}
load:
  shape: {kind: constant, rps: 10}
  classes:
    - name: otp
      ttl_s: 60
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
timeline:
  - {at_s: 3, sut: crash, for_s: 1}
"""


@pytest.mark.parametrize("idempotency", [False, True], ids=["no-idempotency", "idempotency"])
def test_kill_9_of_the_mailer_mid_drill_loses_nothing_and_duplicates_at_most_what_was_in_flight(
        tmp_path: Path, idempotency: bool) -> None:
    scenario = tmp_path / "crash.yaml"
    scenario.write_text(CRASH)
    # without the idempotency check, a message the relay stored before the kill (its 250 still in the tarpit)
    # but that the mailer never marked sent goes out again after the restart; with it, the mailer asks first
    flags = ["--profile", "hardened", "--workers", "4", "--lease", "2",
             "--idempotency" if idempotency else "--no-idempotency"]
    code, run_dir, summary = drill(tmp_path, scenario, mailer(*flags))
    events = EventStore(run_dir / "events").events()
    crashed = [e for e in events if e.kind == "sut.crashed"]
    starts = [e for e in events if e.kind == "sut.started"]
    assert len(crashed) == 1 and [e["restart"] for e in starts] == [False, True]
    t_kill = crashed[0].t_s
    assert crashed[0]["pid"] == starts[0]["pid"] != starts[1]["pid"]
    # the crash is the drill, not a failure of the run: it completed, and its fault window is the downtime
    assert summary["run"]["status"] == "completed" and summary["run"]["degraded"] == []
    assert [(w["target"], w["what"]) for w in summary["windows"]] == [("sut", "crash (kill -9)")]
    # every message the mailer acknowledged (a 2xx) was delivered after the restart; of the requests that failed,
    # only one under way at the kill may have been queued before it died (its 202 never written)
    reqs = [e for e in events if e.kind == "load.request.completed"]
    accepted = {e.corr for e in reqs if e["ok"]}
    failed = [e for e in reqs if not e["ok"]]
    # the requests that failed were made while it was down: from just before the kill (under way at it) until
    # the restarted process was ready (however long a loaded machine took to start it)
    t_back = [e for e in events if e.kind == "sut.ready"][1].t_s
    assert len(reqs) == 60 and failed and all(t_kill - 3 < e["started_t_s"] <= t_back for e in failed)
    under_way = {e.corr for e in failed if e["started_t_s"] <= t_kill}
    delivered = {e.corr for e in events if e.kind == "mta.message.accepted"}
    assert accepted <= delivered <= accepted | under_way, (delivered - accepted, under_way)
    m = summary["metrics"]
    assert (m["messages_requested"], m["delivered"], m["undelivered"]) == (60, len(delivered), 60 - len(delivered))
    # in flight at the kill: SMTP transactions that had begun and had not been answered 250 by then
    txns: dict[tuple[int, int], list[Any]] = {}
    for e in events:
        if e.kind == "mta.reply.sent" and e.data.get("txn") is not None:
            txns.setdefault((e["conn"], e["txn"]), []).append(e)
    in_flight = {e.corr for evs in txns.values() if evs[0].t_s < t_kill
                 and not any(x["verb"] == "DOT" and x["code"] == 250 and x.t_s < t_kill for x in evs)
                 for e in evs if e.corr}
    dup = {e.corr for e in events if e.kind == "mta.message.accepted"}
    dup = {c for c in dup if sum(1 for e in events if e.kind == "mta.message.accepted" and e.corr == c) > 1}
    assert in_flight and len(in_flight) <= 4  # at most one per worker
    if idempotency:
        assert m["duplicates"] == m["duplicate_messages"] == len(dup) == 0
    else:  # the crash cost duplicates, and maildrill counts exactly them: each one a message being sent at the kill
        assert 1 <= m["duplicates"] == m["duplicate_messages"] == len(dup) <= 4  # at most one per worker
        begun = {e.corr for evs in txns.values() if evs[0].t_s < t_kill for e in evs if e.corr}
        assert dup <= begun, (dup, begun)
        # A stored message whose 250 was never sent (the mailer died in the tarpit) is a lost ack, and its resend
        # is counted as after one. (A message whose 250 did go out just before the kill, but which the mailer
        # died before marking sent, is a duplicate too: the race between a reply and its commit, which a loaded
        # machine widens; its ack was not lost.)
        lost = {e.corr for e in events if e.kind == "mta.message.ack_lost"}
        assert dup & in_flight <= lost, (dup, in_flight, lost)
        assert m["duplicates_after_lost_ack"] == len(dup & lost)
    assert code == 0  # no thresholds: the numbers above are the verdict
