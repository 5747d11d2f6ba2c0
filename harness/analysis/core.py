"""`analyze(events, scenario)`: one pass over the events joins every message's story — its requests, its
delivery attempts at each MTA and their replies, its acceptances — and the metrics are computed from that
join. Pure: no I/O, no clock; the same events in any order give the same result.

Definitions (also in the README, "Metrics"): times are scenario seconds since the load phase began
(event seconds since the run-clock origin, minus the load start, divided by `time_scale`).
- A *delivery attempt* is one SMTP transaction (an MTA's connection and transaction number) that reached
  MAIL FROM, or one HTTP request to a fake email-API vendor (which records as `mta/<name>` with the same
  kinds: its reply carries the SMTP-equivalent code class; a request it holds or never answers records
  `mta.request.received`); it belongs to every correlation id a reply in
  it carried. Its *outcome* is `accepted` (a
  message was stored, or a blackholing 250 was sent), else `5xx` (a permanent reply), else `4xx`
  (deferred), else `other` (the connection ended without a verdict).
- A message is *delivered* once any MTA records `mta.message.accepted` for its id (`ack: lost` included:
  the receiver has it). It is *resolved* when delivered or permanently rejected (its first 5xx).
- outstanding(t) = messages requested by t and not resolved by t (the issue's "requested - delivered",
  with bounced messages counted as resolved so that a drill with hard bounces can still drain).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from maildrill.harness.analysis.model import Analysis, FaultWindow, Offender, Series, Value
from maildrill.harness.analysis.stats import cv, percentile, sync_index
from maildrill.harness.analysis.webhooks import WebhookTally
from maildrill.harness.events import Event

MAX_BINS = 200_000
MAX_OFFENDERS_PER_RULE = 500
_CLEARS = ("set accept", "enable")


class _Attempt:
    __slots__ = ("accepted", "code", "corrs", "end", "key", "mta", "start")

    def __init__(self, key: tuple[str, Any, Any], t: float) -> None:
        self.key = key
        self.mta = key[0]
        self.start = t
        self.end = t
        self.corrs: set[str] = set()
        self.code = 0  # the deciding reply: 250 when accepted, else the last 4xx/5xx
        self.accepted = False

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted"
        if self.code >= 500:
            return "5xx"
        if self.code >= 400:
            return "4xx"
        return "other"


class _Message:
    __slots__ = (
        "acceptances",
        "attempts",
        "cls",
        "discarded",
        "first_5xx",
        "first_5xx_key",
        "first_ok",
        "first_req",
        "requests",
        "resends",
    )

    def __init__(self) -> None:
        self.cls: str | None = None
        self.first_req = math.inf
        self.first_ok = math.inf  # the first request the SUT acknowledged (2xx / 250)
        self.requests = 0
        self.resends: list[float] = []
        self.acceptances: list[tuple[float, str, str]] = []  # (t, mta, ack)
        self.attempts: list[_Attempt] = []
        self.first_5xx: tuple[float, str] | None = None  # (t, mta)
        self.first_5xx_key: tuple[str, Any, Any] | None = None
        self.discarded = 0


def analyze(events: Iterable[Event], scenario: Mapping[str, Any] | None = None, *,
            skipped: Sequence[str] = (), run_events: Sequence[Event] | None = None) -> Analysis:
    """`run_events`: the run's own events (source "run": phases, timeline), when `events` is a one-pass stream
    (EventStore.stream) — the time origin comes from them, and `events` is then read exactly once."""
    scenario = scenario or {}
    if run_events is None:
        evs: Iterable[Event] = events if isinstance(events, list) else list(events)
        scale, t0, drain_started, notes = _origin(evs, scenario)  # type: ignore[arg-type]
    else:
        evs = events
        scale, t0, drain_started, notes = _origin(list(run_events), scenario)
    inv = 1.0 / scale

    msgs: dict[str, _Message] = {}
    attempts: dict[tuple[str, Any, Any], _Attempt] = {}
    requests: list[tuple[float, str | None, bool, float]] = []  # (t, class, ok, latency_ms)
    accepted_at: dict[tuple[str, Any, Any, str], tuple[_Message, int]] = {}  # (mta, conn, txn, corr) -> acceptance
    ack_lost: set[tuple[str, Any, Any, str | None]] = set()
    depth: list[tuple[float, float]] = []
    fired: list[tuple[float, int, str, str]] = []
    undone: dict[int, float] = {}
    discarded_by_mta: dict[str, int] = defaultdict(int)
    mtas_seen: set[str] = set()
    t_last = 0.0
    webhooks = WebhookTally()  # the fake vendors' delivery webhooks (analysis.webhooks)

    for e in evs:
        kind = e.kind
        t = (e.t_s - t0) * inv
        if t > t_last:
            t_last = t
        d = e.data
        if kind.startswith("mta.webhook.") or kind == "mta.message.accepted":
            webhooks.add(kind, e.source, t, d)
        if kind == "mta.reply.sent":
            txn = d.get("txn") or 0
            if txn < 1:
                continue
            mta = _mta_of(e.source)
            key = (mta, d.get("conn"), txn)
            a = attempts.get(key)
            if a is None:
                a = attempts[key] = _Attempt(key, t)
            elif t < a.start:
                a.start = t
            if t > a.end:
                a.end = t
            code = d.get("code") or 0
            if code >= 400:
                a.code = code
            corr = e.corr
            if corr is not None:
                a.corrs.add(corr)
                if code >= 500:
                    m = msgs.get(corr)
                    if m is None:
                        m = msgs[corr] = _Message()
                    if m.first_5xx is None or t < m.first_5xx[0]:
                        m.first_5xx, m.first_5xx_key = (t, mta), key
        elif kind == "load.request.completed":
            corr = e.corr
            cls = d.get("class")
            requests.append((t, cls, bool(d.get("ok")), float(d.get("latency_ms") or 0.0)))
            if corr is None:
                continue
            m = msgs.get(corr)
            if m is None:
                m = msgs[corr] = _Message()
            m.requests += 1
            if cls is not None:
                m.cls = cls
            if t < m.first_req:
                m.first_req = t
            if d.get("ok") and t < m.first_ok:
                m.first_ok = t
            if d.get("resend"):
                m.resends.append(t)
        elif kind == "mta.message.accepted" or kind == "mta.message.discarded":
            mta = _mta_of(e.source)
            mtas_seen.add(mta)
            key = (mta, d.get("conn"), d.get("txn"))
            a = attempts.get(key)
            if a is None:
                a = attempts[key] = _Attempt(key, t)
            elif t < a.start:  # a vendor records the acceptance before its reply: the attempt starts here
                a.start = t
            a.end = max(a.end, t)
            a.accepted = True
            if e.corr is not None:
                a.corrs.add(e.corr)
                m = msgs.get(e.corr)
                if m is None:
                    m = msgs[e.corr] = _Message()
                if kind == "mta.message.accepted":
                    m.acceptances.append((t, mta, str(d.get("ack", "sent"))))
                    if d.get("ack", "sent") != "lost":
                        accepted_at[(mta, d.get("conn"), d.get("txn"), e.corr)] = (m, len(m.acceptances) - 1)
                else:
                    m.discarded += 1
            if kind == "mta.message.discarded":
                discarded_by_mta[mta] += 1
        elif kind == "mta.request.received":  # a vendor request held or never answered (hang, reset): an attempt
            key = (_mta_of(e.source), d.get("conn"), d.get("txn"))
            a = attempts.get(key)
            if a is None:
                a = attempts[key] = _Attempt(key, t)
            elif t < a.start:
                a.start = t
            a.end = max(a.end, t)
            if e.corr is not None:
                a.corrs.add(e.corr)
                msgs.setdefault(e.corr, _Message())
        elif kind == "mta.message.ack_lost":  # stored, but the client was gone before its 250 (RFC 1047)
            mta = _mta_of(e.source)
            ack_lost.add((mta, d.get("conn"), d.get("txn"), e.corr))
        elif kind == "sut.queue_depth.sampled":
            depth.append((t, float(d.get("depth") or 0.0)))
        elif kind == "run.action.fired":
            fired.append((t, int(d.get("action", -1)), str(d.get("target", "")), str(d.get("what", ""))))
        elif kind == "run.action.undone":
            undone[int(d.get("action", -1))] = t
        elif kind == "mta.connection.opened" or kind == "mta.listener.opened":
            mtas_seen.add(_mta_of(e.source))

    for key in ack_lost:  # files are read in any order: the acceptance may come after its ack_lost
        hit = accepted_at.get(key)
        if hit is not None:
            m, i = hit
            t_acc, mta_acc, _ = m.acceptances[i]
            m.acceptances[i] = (t_acc, mta_acc, "lost")
    for a in attempts.values():
        mtas_seen.add(a.mta)
        for c in a.corrs:
            m = msgs.get(c)
            if m is not None:
                m.attempts.append(a)
    for m in msgs.values():
        m.acceptances.sort()
        m.attempts.sort(key=lambda a: (a.start, a.mta))
        m.resends.sort()

    if not requests:  # MTA events only (a unit test of a sender): every message an MTA saw was "requested"
        for m in msgs.values():
            starts = [a.start for a in m.attempts] + [acc[0] for acc in m.acceptances]
            if starts:
                m.first_req = m.first_ok = min(starts)
    requested = {c: msgs[c] for c in sorted(msgs) if msgs[c].first_req < math.inf}  # by id: order-free results
    load_end = float(scenario["duration_s"]) if "duration_s" in scenario else (
        (drain_started - t0) * inv if drain_started is not None else max((r[0] for r in requests), default=0.0))
    end = max(t_last, load_end)
    windows = _windows(fired, undone, end)
    ttl = {str(c["name"]): float(c["ttl_s"]) for c in scenario.get("load", {}).get("classes", [])
           if "name" in c and "ttl_s" in c}
    classes = list(ttl) + sorted({m.cls for m in requested.values() if m.cls and m.cls not in ttl})
    fault_end = max((w.end_s for w in windows), default=None)
    drain_ref = max(load_end, fault_end) if fault_end is not None else load_end

    all_attempts = sorted(attempts.values(), key=lambda a: (a.start, a.mta))
    offenders: list[Offender] = []
    metrics = _message_metrics(list(requested.items()), requests, all_attempts, ttl, drain_ref, offenders,
                               discarded=sum(discarded_by_mta.values()), has_ttl=bool(ttl))
    by_class: dict[str, dict[str, Value]] = {}
    for cls in classes:
        subset = [(c, m) for c, m in requested.items() if m.cls == cls]
        cls_attempts = _attempts_of(subset)
        by_class[cls] = _message_metrics(subset, [r for r in requests if r[1] == cls], cls_attempts, ttl,
                                         drain_ref, None, discarded=sum(m.discarded for _, m in subset),
                                         has_ttl=cls in ttl)

    # run-wide only
    deferred = sum(1 for a in all_attempts if a.outcome == "4xx")
    metrics["deferred_ratio"] = deferred / len(all_attempts) if all_attempts else None
    bins = min(MAX_BINS, max(1, math.ceil(end)))
    series: dict[str, Series] = {}
    att_series = _count([a.start for a in all_attempts], bins)
    series["attempts"] = att_series
    metrics["attempts_per_s_peak"] = max(att_series.values) if all_attempts else 0
    storm_start = min((w.start_s for w in windows), default=None)
    if storm_start is None:
        storm_start = min((a.end for a in all_attempts if a.outcome == "4xx"), default=None)
    metrics["attempts_per_s_peak_after_fault"] = (
        max(att_series.values[max(0, int(storm_start)):], default=0) if storm_start is not None else None)
    metrics["queue_depth_peak"] = max((dv for _, dv in depth), default=None)
    firsts = [m.acceptances[0][0] for m in requested.values() if m.acceptances]
    lasts = [acc[0] for m in requested.values() for acc in m.acceptances]
    metrics["first_delivery_s"] = min(firsts, default=None)
    metrics["last_delivery_s"] = max(lasts, default=None)
    in_fault = [r for r in requests if any(w.start_s <= r[0] <= w.end_s for w in windows)]
    windows = [_with_app_side(w, requests) for w in windows]  # the app side inside each fault window
    metrics["http_error_ratio_in_faults"] = _error_ratio(in_fault) if windows else None
    metrics["request_latency_p99_ms_in_faults"] = percentile(sorted(r[3] for r in in_fault), 99) if windows else None
    metrics.update(webhooks.metrics())

    by_mta = _mta_metrics(sorted(mtas_seen | _receiver_names(scenario)), all_attempts, requested, discarded_by_mta)

    series["requests"] = _count([r[0] for r in requests], bins)
    series["delivered"] = _count([m.acceptances[0][0] for m in requested.values() if m.acceptances], bins)
    series["outstanding"] = _outstanding_series(requested.values(), bins)
    outcomes: dict[str, list[float]] = defaultdict(list)
    for a in all_attempts:
        outcomes[a.outcome].append(a.end)
    series["replies_2xx"] = _count(outcomes["accepted"], bins)
    series["replies_4xx"] = _count(outcomes["4xx"], bins)
    series["replies_5xx"] = _count(outcomes["5xx"], bins)
    series["deferred_ratio"] = Series(att_series.t_s, tuple(
        (d4 / n if n else 0.0) for d4, n in zip(series["replies_4xx"].values, att_series.values, strict=True)))
    if depth:
        series["queue_depth"] = _last_value_series(depth, bins)

    intervals = _intervals(requested.values())
    latencies = {cls: tuple(sorted(_latency(m) for _, m in requested.items() if m.cls == cls and m.acceptances))
                 for cls in classes}
    if not requests:
        notes.append("no load events: nothing was requested, so message metrics are empty")
    return Analysis(metrics=metrics, by_class=by_class, by_mta=by_mta, windows=tuple(windows),
                    load_window=(0.0, load_end), series=series, retry_intervals_s=tuple(intervals),
                    latencies_s=latencies, ttl_s=ttl, offenders=tuple(offenders), skipped=tuple(skipped),
                    time_scale=scale, notes=tuple(notes))


# --- building blocks -----------------------------------------------------------------------------
def _origin(evs: list[Event], scenario: Mapping[str, Any]) -> tuple[float, float, float | None, list[str]]:
    scale = scenario.get("time_scale")
    t0: float | None = None
    drain: float | None = None
    notes: list[str] = []
    for e in evs:
        if e.kind == "run.phase.changed":
            phase = e.data.get("phase")
            if phase == "load":
                t0 = float(e.data.get("load_t0_s", e.t_s))  # type: ignore[arg-type]
            elif phase == "drain":
                drain = e.t_s
        elif e.kind == "run.started" and scale is None:
            scale = e.data.get("time_scale")
    if t0 is None:
        t0 = 0.0
        notes.append("no run.phase.changed load event: times are seconds since the run clock's origin")
    try:
        scale_f = float(scale) if scale is not None else 1.0
    except (TypeError, ValueError):
        scale_f = 1.0
    return (scale_f if scale_f > 0 else 1.0), t0, drain, notes


def _windows(fired: list[tuple[float, int, str, str]], undone: dict[int, float], end: float) -> list[FaultWindow]:
    fired = sorted(fired)
    out = []
    for i, (t, idx, target, what) in enumerate(fired):
        if what in _CLEARS:
            continue
        stop = undone.get(idx, end)
        for t2, _, target2, what2 in fired[i + 1:]:
            if target2 != target:
                continue
            if target.startswith(("mta/", "vendor/")) or (what == "disable" and what2 == "enable"):
                stop = min(stop, t2)  # a later set replaces this one; an enable ends a disable
                break
        out.append(FaultWindow(target, what, t, max(t, stop)))
    return out


def _with_app_side(w: FaultWindow, requests: list[tuple[float, str | None, bool, float]]) -> FaultWindow:
    inside = [r for r in requests if w.start_s <= r[0] <= w.end_s]
    return dataclasses.replace(w, requests=len(inside), http_error_ratio=_error_ratio(inside),
                               request_latency_p99_ms=percentile(sorted(r[3] for r in inside), 99))


def _attempts_of(subset: list[tuple[str, _Message]]) -> list[_Attempt]:
    seen: dict[int, _Attempt] = {}
    for _, m in subset:
        for a in m.attempts:
            seen[id(a)] = a
    return sorted(seen.values(), key=lambda a: (a.start, a.mta))


def _receiver_names(scenario: Mapping[str, Any]) -> set[str]:
    """The scenario's MTAs and fake email-API vendors: both record as `mta/<name>` and are scoped alike."""
    return {str(r["name"]) for key in ("mtas", "vendors") for r in scenario.get(key, []) if "name" in r}


def _mta_of(source: str) -> str:
    """The MTA's name from an event source (`mta/<name>`)."""
    return source[4:] if source.startswith("mta/") else source


def _finite(x: float | None) -> float | None:
    """inf (the percentile falls on a message never delivered) is reported as null: "never"."""
    return None if x is None or math.isinf(x) else x


def _latency(m: _Message) -> float:
    return max(0.0, m.acceptances[0][0] - m.first_req)


def _resolved(m: _Message) -> float:
    t = m.acceptances[0][0] if m.acceptances else math.inf
    if m.first_5xx is not None:
        t = min(t, m.first_5xx[0])
    return max(t, m.first_req)


def _error_ratio(reqs: Sequence[tuple[float, str | None, bool, float]]) -> float | None:
    return sum(1 for r in reqs if not r[2]) / len(reqs) if reqs else None


def _owed_from(m: _Message) -> float:
    """When the SUT took the message on: its first acknowledged request; a message whose requests all failed
    but that was delivered anyway (queued before a crash cut the reply) from its first request; inf (never)
    for one the SUT refused and never sent — the user saw the error (http_error_ratio, undelivered), but it
    was never in the SUT's queue, so it is not outstanding and does not keep a drain from ending."""
    if m.first_ok < math.inf:
        return m.first_ok
    return m.first_req if m.acceptances else math.inf


def _drain(msgs: Iterable[_Message], ref: float) -> tuple[int, float | None]:
    """(outstanding peak, drain seconds after `ref`) from +1 when the SUT took a message on, -1 at its resolution."""
    steps = []
    for m in msgs:
        start = _owed_from(m)
        if start == math.inf:
            continue
        steps.append((start, 1))
        r = _resolved(m)
        if r < math.inf:
            steps.append((r, -1))
    if not steps:
        return 0, None
    steps.sort(key=lambda s: (s[0], -s[1]))  # at equal times count the request before its resolution
    level = peak = 0
    at_ref: int | None = None
    drained: float | None = None
    for t, step in steps:
        if at_ref is None and t > ref:
            at_ref = level
            if level == 0:
                drained = 0.0
        level += step
        peak = max(peak, level)
        if at_ref is not None and drained is None and level == 0:
            drained = t - ref
    if at_ref is None:  # every step happened by ref
        drained = 0.0 if level == 0 else None
    return peak, drained


def _interval_sequences(msgs: Iterable[_Message]) -> list[list[float]]:
    """Per message, the times between its consecutive delivery attempts."""
    return [[b.start - a.start for a, b in itertools.pairwise(m.attempts)] for m in msgs if len(m.attempts) > 1]


def _intervals(msgs: Iterable[_Message]) -> list[float]:
    return [v for seq in _interval_sequences(msgs) for v in seq]


def _detail_attempts(m: _Message) -> str:
    parts = [f"{a.mta} {a.start:.2f} s {a.code if not a.accepted else 250}" for a in m.attempts[:12]]
    more = f" (+{len(m.attempts) - 12} more)" if len(m.attempts) > 12 else ""
    return "attempts: " + ", ".join(parts) + more if parts else "no delivery attempt reached an MTA"


def _message_metrics(subset: list[tuple[str, _Message]], reqs: list[tuple[float, str | None, bool, float]],
                     attempts: list[_Attempt], ttl: Mapping[str, float], drain_ref: float,
                     offenders: list[Offender] | None, *, discarded: int, has_ttl: bool) -> dict[str, Value]:
    n = len(subset)
    delivered = [m for _, m in subset if m.acceptances]
    dup = dup_lost = dup_failover = dup_resend = dup_msgs = 0
    retried_5xx = 0
    expired = 0
    counts: dict[str, int] = defaultdict(int)
    for corr, m in subset:
        acc = m.acceptances
        if len(acc) > 1:
            dup_msgs += 1
            first_mta = acc[0][1]
            for i in range(1, len(acc)):
                t, mta, _ = acc[i]
                dup += 1
                if any(a[2] == "lost" for a in acc[:i]):
                    dup_lost += 1
                elif mta != first_mta:
                    dup_failover += 1
                elif any(r < t for r in m.resends):
                    dup_resend += 1
            if offenders is not None and counts["duplicates"] < MAX_OFFENDERS_PER_RULE:
                counts["duplicates"] += 1
                text = ", ".join(f"by {mta} at {t:.2f} s" + (" (250 lost)" if ack == "lost" else "")
                                 for t, mta, ack in acc)
                offenders.append(Offender(corr, m.cls, "duplicates", f"accepted {len(acc)} times: {text}"))
        if _retried_after_5xx(m):
            retried_5xx += 1
            if offenders is not None and counts["permanent_failures_retried"] < MAX_OFFENDERS_PER_RULE:
                counts["permanent_failures_retried"] += 1
                offenders.append(Offender(corr, m.cls, "permanent_failures_retried",
                                          f"5xx from {m.first_5xx[1]} at {m.first_5xx[0]:.2f} s, then attempted "
                                          f"again; {_detail_attempts(m)}"))
        limit = ttl.get(m.cls or "")
        if limit is not None:
            late = not m.acceptances or _latency(m) > limit
            if late:
                expired += 1
                if offenders is not None and counts["otp_expired"] < MAX_OFFENDERS_PER_RULE:
                    counts["otp_expired"] += 1
                    when = (f"delivered after {_latency(m):.2f} s" if m.acceptances else "never delivered")
                    offenders.append(Offender(corr, m.cls, "otp_expired",
                                              f"{when} (ttl {limit:g} s); {_detail_attempts(m)}"))
        if not m.acceptances and offenders is not None and counts["undelivered"] < MAX_OFFENDERS_PER_RULE:
            counts["undelivered"] += 1
            offenders.append(Offender(corr, m.cls, "undelivered", _detail_attempts(m)))
    # Delivery latency is over every message the SUT owed a delivery: one never accepted (and not bounced
    # with a 5xx) is infinitely late. A p99 over the few that got through would hide the tail it exists to show.
    lat = sorted(_latency(m) if m.acceptances else math.inf
                 for _, m in subset if m.acceptances or m.first_5xx is None)
    sequences = _interval_sequences(m for _, m in subset)
    intervals = sorted(v for seq in sequences for v in seq)
    peak, drain = _drain((m for _, m in subset), drain_ref)
    req_lat = sorted(r[3] for r in reqs)
    return {
        "requests_total": len(reqs),
        "messages_requested": n,
        "delivered": len(delivered),
        "undelivered": n - len(delivered),
        "acknowledged_but_lost": discarded,
        "outstanding_peak": peak,
        "drain_s": drain if n else None,
        "attempts_total": len(attempts),
        "retry_amplification": len(attempts) / n if n else None,
        "retry_interval_p50_s": percentile(intervals, 50),
        "retry_interval_p95_s": percentile(intervals, 95),
        "retry_interval_cv": cv(intervals),
        "retry_sync_index": sync_index(sequences),
        "permanent_failures_retried": retried_5xx,
        "duplicates": dup,
        "duplicate_messages": dup_msgs,
        "duplicates_after_lost_ack": dup_lost,
        "duplicates_failover": dup_failover,
        "duplicates_user_resend": dup_resend,
        "latency_p50_s": _finite(percentile(lat, 50)),
        "latency_p95_s": _finite(percentile(lat, 95)),
        "latency_p99_s": _finite(percentile(lat, 99)),
        "latency_max_s": _finite(lat[-1]) if lat else None,
        "otp_expired": expired if has_ttl else None,
        "otp_expired_ratio": (expired / n if n else None) if has_ttl else None,
        "http_error_ratio": _error_ratio(reqs),
        "request_latency_p50_ms": percentile(req_lat, 50),
        "request_latency_p99_ms": percentile(req_lat, 99),
    }


def _retried_after_5xx(m: _Message) -> bool:
    """Another delivery attempt for the message began after its first permanent (5xx) reply."""
    if m.first_5xx is None:
        return False
    t5 = m.first_5xx[0]
    return any(a.start >= t5 and a.key != m.first_5xx_key for a in m.attempts)


def _mta_metrics(names: list[str], attempts: list[_Attempt], requested: Mapping[str, _Message],
                 discarded: Mapping[str, int]) -> dict[str, dict[str, Value]]:
    out: dict[str, dict[str, Value]] = {}
    for name in names:
        mine = [a for a in attempts if a.mta == name]
        delivered = dups = retried = 0
        for m in requested.values():
            at = [acc for acc in m.acceptances if acc[1] == name]
            if at:
                delivered += 1
            dups += sum(1 for acc in m.acceptances[1:] if acc[1] == name)
            if m.first_5xx is not None and m.first_5xx[1] == name and _retried_after_5xx(m):
                retried += 1
        times = [acc[0] for m in requested.values() for acc in m.acceptances if acc[1] == name]
        out[name] = {
            "first_delivery_s": min(times, default=None),
            "last_delivery_s": max(times, default=None),
            "delivered": delivered,
            "acknowledged_but_lost": discarded.get(name, 0),
            "attempts_total": len(mine),
            "deferred_ratio": sum(1 for a in mine if a.outcome == "4xx") / len(mine) if mine else None,
            "permanent_failures_retried": retried,
            "duplicates": dups,
        }
    return out


def _count(times: Iterable[float], bins: int) -> Series:
    values = [0.0] * bins
    for t in times:
        i = int(t) if t >= 0 else -1
        if 0 <= i < bins:
            values[i] += 1
        elif i >= bins:
            values[-1] += 1
    return Series(tuple(float(i) for i in range(bins)), tuple(values))


def _outstanding_series(msgs: Iterable[_Message], bins: int) -> Series:
    """Value i: messages the SUT had taken on before the end of second i and not resolved by then."""
    delta = [0] * bins
    for m in msgs:
        start = _owed_from(m)
        if start == math.inf:
            continue
        i = max(0, int(start))
        if i < bins:
            delta[i] += 1
        r = _resolved(m)
        j = max(0, int(r)) if r < math.inf else bins
        if j < bins:
            delta[j] -= 1
    values, level = [], 0
    for d in delta:
        level += d
        values.append(float(level))
    return Series(tuple(float(i) for i in range(bins)), tuple(values))


def _last_value_series(samples: list[tuple[float, float]], bins: int) -> Series:
    samples = sorted(samples)
    values, j, last = [], 0, 0.0
    for i in range(bins):
        hi = None
        while j < len(samples) and samples[j][0] < i + 1:
            hi = samples[j][1] if hi is None else max(hi, samples[j][1])
            last = samples[j][1]
            j += 1
        values.append(hi if hi is not None else last)
    return Series(tuple(float(i) for i in range(bins)), tuple(values))
