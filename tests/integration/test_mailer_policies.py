"""The reference mailer as a real subprocess against real SMTP receivers: each policy flag moves what it should."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import test_mailer_smtpd as smtpd
from test_mailer_smtpd import LOSE_ACK, MailerProcess, ScriptedSMTP, StatusAPI, wait_until

# The shared fixtures, bound here so that pytest finds them for this module.
smtp_servers = smtpd.smtp_servers
mailer = smtpd.mailer
queue_env = smtpd.queue_env

Servers = Callable[..., ScriptedSMTP]
Mailer = Callable[..., MailerProcess]


def claimed_message_ids(run_dir: Path, queue_env: dict[str, str]) -> set[str]:
    """Message-IDs the queue shows as claimed by a worker (in flight), read from the queue's own storage."""
    if "MAILER_REDIS_URL" in queue_env:
        import redis

        client = redis.Redis.from_url(queue_env["MAILER_REDIS_URL"], decode_responses=True)
        try:
            ids = [i for lane in (0, 1) for i in client.zrange(f"maildrill-mailer:leases:{lane}", 0, -1)]
            return {client.hget(f"maildrill-mailer:msg:{i}", "message_id") for i in ids}
        finally:
            client.close()
    db = sqlite3.connect(run_dir / "mailer-queue.sqlite3")
    try:
        return {mid for (mid,) in db.execute("SELECT message_id FROM messages WHERE state = 'sending'")}
    finally:
        db.close()


def by_rcpt(server: ScriptedSMTP) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in server.snapshot():
        out.setdefault(t.rcpt, []).append(t.result)
    return out


@pytest.mark.parametrize("retry_5xx", [False, True])
def test_5xx_is_never_retried_unless_retry_5xx(smtp_servers: Servers, mailer: Mailer, retry_5xx: bool) -> None:
    server = smtp_servers(
        "primary",
        lambda stage, rcpt, n: "550 5.1.1 no such user" if stage == "RCPT" and rcpt.startswith("bad") else None,
    )
    m = mailer(
        ["--retry", "fixed:0.1", "--jitter", "none", "--max-attempts", "3", *(["--retry-5xx"] if retry_5xx else [])],
        servers=[server],
    )
    for email in ("bad1@users.drill.test", "ok1@users.drill.test", "bad2@users.drill.test"):
        m.post("/otp", email)
    attempts_each = 3 if retry_5xx else 1
    wait_until("all attempts", lambda: len(server.snapshot()) == 2 * attempts_each + 1, proc=m.proc)
    wait_until("bad messages failed", lambda: 'mailer_messages{state="failed"} 2' in m.get("/metrics"), proc=m.proc)
    assert by_rcpt(server) == {
        "bad1@users.drill.test": ["550"] * attempts_each,
        "bad2@users.drill.test": ["550"] * attempts_each,
        "ok1@users.drill.test": ["accepted"],
    }
    assert m.stop() == 0


def test_fixed_retry_waits_the_fixed_interval_and_keeps_the_message_id(smtp_servers: Servers, mailer: Mailer) -> None:
    server = smtp_servers(
        "primary", lambda stage, rcpt, n: "451 4.7.1 Greylisted" if stage == "RCPT" and n <= 2 else None
    )
    # fixed:2 at time scale 0.25 = 0.5 s between attempts.
    m = mailer(["--retry", "fixed:2", "--jitter", "none"], servers=[server], time_scale=0.25)
    sent = m.post("/password-reset", "u1@users.drill.test")
    wait_until("delivery", lambda: server.accepted(), proc=m.proc)
    txns = server.snapshot()
    assert [(t.rcpt, t.result, t.stage) for t in txns] == [("u1@users.drill.test", "451", "RCPT")] * 2 + [
        ("u1@users.drill.test", "accepted", "DOT")
    ]
    assert txns[-1].message_id == sent["message_id"]
    gaps = [b.t - a.t for a, b in itertools.pairwise(txns)]
    assert all(0.5 - 0.02 <= g < 0.5 + 10.0 for g in gaps), gaps  # the rest: a loaded machine's delays
    # The receiver records before its 250 reaches the mailer: wait for the mailer to settle the message.
    state = wait_until(
        "mailer marks it sent",
        lambda: (s := json.loads(m.get(f"/messages/{sent['id']}")))["state"] == "sent" and s,
        proc=m.proc,
    )
    assert (state["attempts"], state["vendor"]) == (3, "primary")


@pytest.mark.parametrize("given", ["flag", "env"])
def test_exp_full_jitter_spreads_retries_as_drawn_from_the_seed(smtp_servers: Servers, mailer: Mailer,
                                                                given: str) -> None:
    """The seed comes from --seed, or from $MAILDRILL_SEED (a drill passes its own seed that way)."""
    server = smtp_servers(
        "primary", lambda stage, rcpt, n: "451 4.7.1 try later" if stage == "RCPT" and n == 1 else None
    )
    flags = ["--retry", "exp:2,2", "--jitter", "full", "--workers", "4"]
    if given == "flag":
        m = mailer([*flags, "--seed", "7"], servers=[server], extra_env={"MAILDRILL_SEED": "99"})
    else:
        m = mailer(flags, servers=[server], extra_env={"MAILDRILL_SEED": "7"})
    assert m.banner.rstrip().endswith(" seed=7")
    ids = {f"u{i}@users.drill.test": m.post("/otp", f"u{i}@users.drill.test")["id"] for i in range(10)}
    wait_until("all delivered", lambda: len(server.accepted()) == 10, proc=m.proc)
    first: dict[str, float] = {}
    delays: dict[str, float] = {}
    for t in server.snapshot():
        if t.result == "451":
            first[t.rcpt] = t.t
        else:
            delays[t.rcpt] = t.t - first[t.rcpt]
    # Full jitter = uniform(0, delay), drawn from the message's own generator, seeded "{seed}:retry:{queue id}:
    # {attempts so far}": each message's delay is known whichever of the 4 workers handled it. Observed a little
    # later than drawn (claim poll, a new connection; room for a loaded machine).
    expected = {rcpt: random.Random(f"7:retry:{i}:1").uniform(0.0, 2.0) for rcpt, i in ids.items()}
    assert sorted(delays) == sorted(expected)
    assert all(expected[r] - 0.02 <= delays[r] <= expected[r] + 3.0 for r in expected), (delays, expected)
    assert max(expected.values()) - min(expected.values()) > 1.0  # the seed spreads them (fixed retries would not)


@pytest.mark.parametrize("lanes", [False, True])
def test_lanes_put_otp_ahead_of_a_newsletter_backlog(
    smtp_servers: Servers, mailer: Mailer, lanes: bool, queue_env: dict[str, str]
) -> None:
    gate = threading.Event()

    def decide(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "MAIL" and rcpt == "news0@users.drill.test":
            gate.wait(30)  # hold the only worker while the backlog is queued behind it
        return None

    server = smtp_servers("primary", decide)
    m = mailer(["--workers", "1", *(["--lanes"] if lanes else ["--no-lanes"])], servers=[server], extra_env=queue_env)
    m.post("/newsletter", "news0@users.drill.test")
    wait_until("first send in flight", lambda: 'mailer_messages{state="sending"} 1' in m.get("/metrics"), proc=m.proc)
    news = [f"news{i}@users.drill.test" for i in range(1, 11)]
    otps = [f"otp{i}@users.drill.test" for i in range(3)]
    for email in news:
        m.post("/newsletter", email)
    for email in otps:
        m.post("/otp", email)
    gate.set()
    wait_until("all delivered", lambda: len(server.accepted()) == 14, proc=m.proc)
    order = [t.rcpt for t in server.accepted()]
    assert order == (["news0@users.drill.test", *otps, *news] if lanes else ["news0@users.drill.test", *news, *otps])


@pytest.mark.parametrize("idempotency", [False, True])
def test_failover_under_lost_acks_duplicates_only_without_idempotency(
    smtp_servers: Servers, mailer: Mailer, idempotency: bool
) -> None:
    primary = smtp_servers("primary", lambda stage, rcpt, n: LOSE_ACK if stage == "DOT" else None)
    backup = smtp_servers("backup")
    status = StatusAPI([primary, backup])
    try:
        m = mailer(
            [
                "--retry",
                "fixed:0.1",
                "--jitter",
                "none",
                "--failover-to",
                "backup",
                "--failover-after",
                "1",
                "--idempotency" if idempotency else "--no-idempotency",
            ],
            servers=[primary, backup],
            status=status,
        )
        ids = [m.post("/otp", f"u{i}@users.drill.test")["message_id"] for i in range(5)]
        wait_until("all settled", lambda: 'mailer_messages{state="sent"} 5' in m.get("/metrics"), proc=m.proc)
        accepted = Counter(t.message_id for t in primary.accepted() + backup.accepted())
        assert sorted(accepted) == sorted(ids)
        assert sorted(t.result for t in primary.snapshot()) == ["lost"] * 5
        if idempotency:
            assert backup.snapshot() == []  # the status API said the primary had them: nothing re-sent
            assert set(accepted.values()) == {1}
        else:
            assert sorted(t.message_id for t in backup.accepted()) == sorted(ids)  # the same Message-ID again
            assert set(accepted.values()) == {2}  # every message duplicated
        assert m.stop() == 0
    finally:
        status.close()


def test_dark_primary_fails_over_at_once(smtp_servers: Servers, mailer: Mailer) -> None:
    dark = smtp_servers("primary")
    dark.close()  # its port now refuses connections
    backup = smtp_servers("backup")
    m = mailer(["--retry", "fixed:30", "--failover-to", "backup", "--failover-after", "3"], servers=[dark, backup])
    ids = [m.post("/otp", f"u{i}@users.drill.test")["message_id"] for i in range(4)]
    wait_until("all at the backup", lambda: len(backup.accepted()) == 4, deadline_s=20, proc=m.proc)
    assert sorted(t.message_id for t in backup.accepted()) == sorted(ids)


def test_resend_cooldown_coalesces_a_users_resends(smtp_servers: Servers, mailer: Mailer) -> None:
    server = smtp_servers("primary")
    m = mailer(["--resend-cooldown", "60"], servers=[server])
    replies = [m.post("/otp", "u1@users.drill.test") for _ in range(3)]
    other_kind = m.post("/password-reset", "u1@users.drill.test")
    assert [r["coalesced"] for r in replies] == [False, True, True]
    assert {r["id"] for r in replies} == {replies[0]["id"]} and other_kind["id"] != replies[0]["id"]
    wait_until("two deliveries", lambda: len(server.accepted()) == 2, proc=m.proc)
    assert sorted(t.message_id for t in server.accepted()) == sorted(
        [replies[0]["message_id"], other_kind["message_id"]]
    )
    metrics = m.get("/metrics")
    assert "mailer_coalesced_total 2\n" in metrics and "mailer_enqueued_total 2\n" in metrics


def test_rate_limit_spaces_sends(smtp_servers: Servers, mailer: Mailer) -> None:
    server = smtp_servers("primary")
    m = mailer(["--rate-limit", "4/s", "--workers", "4"], servers=[server])
    for i in range(12):
        m.post("/newsletter", f"u{i}@users.drill.test")
    wait_until("all delivered", lambda: len(server.accepted()) == 12, proc=m.proc)
    times = [t.t for t in server.accepted()]
    # A burst of 4, then 4 per second: the 12th send can't come before (12 - 4) / 4 = 2 s after the first.
    assert times[-1] - times[0] >= 2.0 - 0.1


def test_pool_backoff_pauses_every_worker_after_a_421(smtp_servers: Servers, mailer: Mailer) -> None:
    throttled = threading.Event()

    def decide(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "MAIL" and not throttled.is_set():
            throttled.set()
            return "421 4.7.0 Try again later, closing connection."
        return None

    server = smtp_servers("primary", decide)
    m = mailer(["--retry", "exp:2,2", "--jitter", "none", "--pool-backoff", "--workers", "4"], servers=[server])
    for i in range(8):
        m.post("/otp", f"u{i}@users.drill.test")
    wait_until("all delivered", lambda: len(server.accepted()) == 8, proc=m.proc)
    txns = server.snapshot()
    assert [t.result for t in txns].count("421") == 1
    t421 = next(t.t for t in txns if t.result == "421")
    # Only sends that had already passed the pause check (at most the other 3 workers) may go on for 2 s.
    during = [t for t in txns if t421 < t.t < t421 + 1.8]
    assert len(during) <= 3, during
    assert max(t.t for t in txns) >= t421 + 2.0 - 0.05


def test_http_api_errors_metrics_and_graceful_stop(smtp_servers: Servers, mailer: Mailer) -> None:
    import urllib.error
    import urllib.request

    server = smtp_servers("primary", lambda stage, rcpt, n: "451 4.3.0 later" if stage == "RCPT" else None)
    m = mailer(["--retry", "fixed:600", "--lanes"], servers=[server])
    for i in range(3):
        m.post("/otp", f"o{i}@users.drill.test")
    for i in range(2):
        m.post("/newsletter", f"n{i}@users.drill.test")
    wait_until("each tried once", lambda: len(server.snapshot()) == 5, proc=m.proc)

    def metrics_after_deferrals() -> str:
        text = m.get("/metrics")
        return text if "\nmailer_deferred_total 5\n" in text else ""

    metrics = wait_until("each deferred", metrics_after_deferrals, proc=m.proc)
    for line in (
        "mailer_queue_depth 5",
        'mailer_lane_depth{lane="transactional"} 3',
        'mailer_lane_depth{lane="bulk"} 2',
        "mailer_deferred_total 5",
        "mailer_sent_total 0",
    ):
        assert f"\n{line}\n" in metrics, line
    assert json.loads(m.get("/healthz"))["status"] == "ok"
    for body, want in ((b'{"email": "nope"}', "'email' must be an address"), (b"{", "body is not JSON")):
        req = urllib.request.Request(m.url + "/otp", data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400 and want in json.loads(err.value.read())["error"]
    assert m.stop() == 0
    assert m.stderr().count("outcome=tempfail code=451") == 5


def test_kill_9_mid_drain_loses_nothing_and_duplicates_at_most_in_flight(
    smtp_servers: Servers, mailer: Mailer, tmp_path: Path, queue_env: dict[str, str]
) -> None:
    # the receiver answers 20 messages, then holds the 21st at its final dot until the test lets it go: so at
    # the kill a third is delivered and sends are in flight (that one for sure), whatever the machine's speed
    dots = 0
    holding, release = threading.Event(), threading.Event()

    def decide(stage: str, rcpt: str, n: int) -> str | None:
        nonlocal dots
        if stage == "DOT":
            dots += 1
            if dots > 20 and not release.is_set():
                holding.set()
                release.wait(60)  # blocks the receiver's loop: every other session waits too
        return None

    server = smtp_servers("primary", decide)
    first = mailer(["--workers", "4"], servers=[server], extra_env=queue_env)
    requested = [first.post("/otp", f"u{i}@users.drill.test")["message_id"] for i in range(60)]
    wait_until("a third delivered and the next held at its dot",
               lambda: holding.is_set() and len(server.accepted()) >= 20, proc=first.proc)
    first.stop(9)
    release.set()
    in_flight = claimed_message_ids(tmp_path, queue_env)
    second = mailer(["--workers", "4"], servers=[server], extra_env=queue_env)
    wait_until(
        "everything delivered",
        lambda: {t.message_id for t in server.accepted()} == set(requested),
        deadline_s=60,
        proc=second.proc,
        detail=lambda: (set(requested) ^ {t.message_id for t in server.accepted()}, server.snapshot()[-5:]),
    )
    wait_until("queue drained", lambda: "\nmailer_queue_depth 0\n" in second.get("/metrics"), proc=second.proc)
    counts = Counter(t.message_id for t in server.accepted())
    duplicated = {mid for mid, n in counts.items() if n > 1}
    assert set(counts.values()) <= {1, 2}
    assert duplicated <= in_flight, (duplicated, in_flight)
    assert 1 <= len(in_flight) <= 4  # sends were in flight at the kill, at most one per worker
    assert second.stop() == 0


def test_profiles_resolve_and_explicit_flags_override(smtp_servers: Servers, mailer: Mailer) -> None:
    server = smtp_servers("primary")
    naive = mailer(["--profile", "naive", "--lanes"], servers=[server])
    hardened = mailer(["--profile", "hardened"], servers=[server])
    assert "retry=fixed:2.0,2.0 jitter=none retry_5xx=True lanes=True pool_backoff=False idempotency=False" in (
        naive.banner
    )
    assert "retry=exp:1.0,30.0 jitter=full retry_5xx=False lanes=True pool_backoff=True idempotency=True" in (
        hardened.banner
    )
    assert naive.stop() == 0 and hardened.stop() == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--retry", "fixed"], {}, "--retry 'fixed': not a retry policy; use none, fixed:<s> (fixed:2) or"),
        (["--retry", "exp:5,1"], {}, "--retry 'exp:5,1': need 0 < base <= cap (seconds); e.g. exp:1,30"),
        (["--rate-limit", "fast"], {}, "--rate-limit 'fast': use a positive rate like 50, 50/s, 600/min or 500/h"),
        (["--failover-to", "backup"], {}, "--failover-to backup: MAILDRILL_SMTP_BACKUP_PORT is not set; vendors in"),
        ([], {"MAILDRILL_TIME_SCALE": "0"}, "MAILDRILL_TIME_SCALE='0': must be a number > 0"),
        ([], {"MAILDRILL_SMTP_PORT": ""}, "MAILDRILL_SMTP_PORT='': not a TCP port; give a number 1..65535"),
        ([], {"MAILDRILL_SEED": "x1"}, "MAILDRILL_SEED='x1': must be an integer (the drill's seed)"),
    ],
)
def test_bad_configuration_exits_2_naming_the_problem_and_fix(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "MAILDRILL_SMTP_PORT": "2525", "MAILDRILL_RUN_DIR": str(tmp_path), **env}
    proc = subprocess.run(
        [sys.executable, "-m", "maildrill.examples.mailer", "--port", "0", *args],
        cwd=smtpd.REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("mailer: " + message), proc.stderr
