"""Event logs from a known model: the ground truth the analysis is tested against, and the scale benchmark's input.

A `Model` is a list of messages, each with its class, the times its requests completed (the first one and the
user's resends) and its delivery attempts (time, MTA, outcome). `events(model)` writes exactly what the real
components would record for that story (run phases, load requests, SMTP replies per transaction, acceptances
with `ack`), in real seconds (scenario seconds x time_scale). `expected(model)` states the metrics the model
implies, computed from the model's own terms — not through the analysis code.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from maildrill.harness.events import Event, Scalar

OUTCOMES = ("4xx", "5xx", "sent", "lost", "discarded")  # deferred, rejected, accepted (250 seen / 250 lost), blackholed
ACCEPTED_AFTER_S = 0.0003  # an attempt's message is stored this long after its MAIL reply (scenario seconds)


@dataclass(frozen=True)
class Attempt:
    t_s: float  # scenario seconds since the load began
    mta: str
    outcome: str


@dataclass(frozen=True)
class Message:
    corr: str
    cls: str
    requests: tuple[float, ...]  # completion times; [0] the first, the rest user resends
    attempts: tuple[Attempt, ...]  # in time order
    ok: bool = True
    latency_ms: float = 2.0


@dataclass(frozen=True)
class Model:
    messages: tuple[Message, ...]
    ttl_s: dict[str, float] = field(default_factory=dict)
    time_scale: float = 1.0
    t0_s: float = 3.0  # run-clock time of load second 0
    duration_s: float = 60.0

    def scenario(self) -> dict[str, object]:
        return {"name": "synthetic", "time_scale": self.time_scale, "duration_s": self.duration_s,
                "load": {"classes": [{"name": c, "ttl_s": t} for c, t in self.ttl_s.items()]},
                "mtas": [{"name": m} for m in sorted({a.mta for msg in self.messages for a in msg.attempts})]}


def events(model: Model) -> list[Event]:
    """The events the real components would write for `model`, time-ordered."""
    k = model.time_scale
    out = [Event(0.0, "run", "run.started", None, {"scenario": "synthetic", "seed": 0, "time_scale": k}),
           Event(model.t0_s, "run", "run.phase.changed", None, {"phase": "load", "load_t0_s": model.t0_s})]
    conn: dict[str, int] = {}

    def real(t: float) -> float:
        return model.t0_s + t * k

    for m in model.messages:
        for i, t in enumerate(m.requests):
            out.append(Event(real(t), "load/0", "load.request.completed", m.corr, {
                "class": m.cls, "user": 0, "resend": i, "method": "POST", "target": "/otp",
                "status": 202 if m.ok else 500, "ok": m.ok, "latency_ms": m.latency_ms,
                "started_t_s": real(t) - m.latency_ms / 1000, "error": None}))
        for a in m.attempts:
            conn[a.mta] = c = conn.get(a.mta, 0) + 1
            src = f"mta/{a.mta}"
            t = real(a.t_s)
            rcpt = f"{m.corr}@users.drill.test"
            base: dict[str, Scalar] = {"conn": c, "txn": 1, "behavior": "default", "closes": False,
                                       "mail_from": "a@app.test"}

            def reply(dt: float, verb: str, code: int, corr: str | None, *, src: str = src, t: float = t,
                      base: dict[str, Scalar] = base) -> Event:
                return Event(t + dt * k, src, "mta.reply.sent", corr, {**base, "verb": verb, "code": code})

            out.append(Event(t - 0.0005 * k, src, "mta.connection.opened", None, {"conn": c, "peer": "127.0.0.1"}))
            out.append(reply(0.0, "MAIL", 250, None))
            if a.outcome == "4xx":
                out.append(reply(0.0001, "RCPT", 451, m.corr))
            elif a.outcome == "5xx":
                out.append(reply(0.0001, "RCPT", 550, m.corr))
            else:
                out.append(reply(0.0001, "RCPT", 250, m.corr))
                out.append(reply(0.0002, "DATA", 354, m.corr))
                data: dict[str, Scalar] = {"conn": c, "txn": 1, "mail_from": "a@app.test", "rcpt": rcpt,
                                           "size_bytes": 300, "message_id": f"<{m.corr}@app.test>"}
                if a.outcome == "discarded":
                    out.append(Event(t + 0.0003 * k, src, "mta.message.discarded", m.corr,
                                     {**data, "reason": "blackhole"}))
                    out.append(reply(0.0003, "DOT", 250, m.corr))
                else:
                    out.append(Event(t + ACCEPTED_AFTER_S * k, src, "mta.message.accepted", m.corr,
                                     {**data, "ack": a.outcome}))
                    if a.outcome == "sent":
                        out.append(reply(0.0003, "DOT", 250, m.corr))
            out.append(Event(t + 0.0004 * k, src, "mta.connection.closed", None, {"conn": c, "by": "client",
                                                                                   "reason": "quit"}))
    out.append(Event(model.t0_s + model.duration_s * k, "run", "run.phase.changed", None, {"phase": "drain"}))
    out.sort(key=lambda e: (e.t_s, e.source))
    return out


def _nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    x = v[max(1, math.ceil(p / 100 * len(v) - 1e-9)) - 1]
    return None if math.isinf(x) else x


def expected(model: Model, cls: str | None = None) -> dict[str, object]:
    """The metrics the model implies (run-wide, or for one class)."""
    msgs = [m for m in model.messages if cls is None or m.cls == cls]
    acc = {m.corr: [a for a in m.attempts if a.outcome in ("sent", "lost")] for m in msgs}
    delivered = [m for m in msgs if acc[m.corr]]
    dup = lost = failover = resend = 0
    for m in msgs:
        got = acc[m.corr]
        for i in range(1, len(got)):
            dup += 1
            if any(a.outcome == "lost" for a in got[:i]):
                lost += 1
            elif got[i].mta != got[0].mta:
                failover += 1
            elif any(r < got[i].t_s + ACCEPTED_AFTER_S for r in m.requests[1:]):
                resend += 1
    retried_5xx = 0
    for m in msgs:
        first = next((i for i, a in enumerate(m.attempts) if a.outcome == "5xx"), None)
        if first is not None and first + 1 < len(m.attempts):
            retried_5xx += 1
    # every message owed a delivery (accepted, or never bounced): never accepted = infinitely late
    latencies = [max(0.0, acc[m.corr][0].t_s + ACCEPTED_AFTER_S - m.requests[0]) if acc[m.corr] else math.inf
                 for m in msgs if acc[m.corr] or not any(a.outcome == "5xx" for a in m.attempts)]
    intervals = [b.t_s - a.t_s for m in msgs for a, b in zip(m.attempts, m.attempts[1:], strict=False)]
    attempts = sum(len(m.attempts) for m in msgs)
    expired = None
    if model.ttl_s:
        expired = sum(1 for m in msgs if m.cls in model.ttl_s and (
            not acc[m.corr] or acc[m.corr][0].t_s + ACCEPTED_AFTER_S - m.requests[0] > model.ttl_s[m.cls]))
    n = len(msgs)
    return {
        "requests_total": sum(len(m.requests) for m in msgs), "messages_requested": n,
        "delivered": len(delivered), "undelivered": n - len(delivered),
        "acknowledged_but_lost": sum(1 for m in msgs for a in m.attempts if a.outcome == "discarded"),
        "attempts_total": attempts, "retry_amplification": attempts / n if n else None,
        "permanent_failures_retried": retried_5xx,
        "duplicates": dup, "duplicate_messages": sum(1 for m in msgs if len(acc[m.corr]) > 1),
        "duplicates_after_lost_ack": lost, "duplicates_failover": failover, "duplicates_user_resend": resend,
        "latency_p50_s": _nearest_rank(latencies, 50), "latency_p99_s": _nearest_rank(latencies, 99),
        "latency_max_s": _nearest_rank(latencies, 100),
        "retry_interval_p50_s": _nearest_rank(intervals, 50),
        "otp_expired": expired,
        "http_error_ratio": (sum(len(m.requests) for m in msgs if not m.ok) / sum(len(m.requests) for m in msgs))
        if msgs else None,
    }


def random_model(n: int, *, seed: int = 0, mtas: tuple[str, ...] = ("primary", "backup"),
                 classes: dict[str, float] | None = None, time_scale: float = 1.0, retry: str = "jitter",
                 duration_s: float = 600.0) -> Model:
    """A plausible drill of `n` messages (fast; for the scale benchmark): most delivered at once, some deferred
    and retried (fixed or jittered backoff), a few bounced, lost acks followed by a duplicate."""
    rng = random.Random(seed)
    classes = classes or {"otp": 60.0, "newsletter": 3600.0}
    names = list(classes)
    out = []
    for i in range(n):
        t = rng.uniform(0, duration_s)
        attempts: list[Attempt] = []
        at = t + rng.uniform(0.01, 0.5)
        delay = 2.0
        while True:
            r = rng.random()
            mta = mtas[0] if rng.random() < 0.9 else mtas[-1]
            if r < 0.25 and len(attempts) < 6:
                attempts.append(Attempt(at, mta, "4xx"))
                at += delay if retry == "fixed" else rng.uniform(0, delay)
                delay = min(delay * 2, 60.0) if retry != "fixed" else delay
                continue
            outcome = "5xx" if r < 0.28 else "lost" if r < 0.30 else "sent"
            attempts.append(Attempt(at, mta, outcome))
            if outcome == "lost":
                attempts.append(Attempt(at + delay, mta, "sent"))
            break
        out.append(Message(f"u{i:07d}", names[i % len(names)], (t,), tuple(attempts)))
    return Model(tuple(out), dict(classes), time_scale, 3.0, duration_s)


def iter_event_lines(model: Model) -> Iterator[Event]:
    yield from events(model)
