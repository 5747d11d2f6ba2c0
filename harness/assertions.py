"""Assertions that read like the incident reports' rules, over recorded events.

Each takes events as a list of `Event`, anything with an `events()` method (`EventStore`, the plugin's
`mail_events`), or a run directory; it fails with the offending messages and their attempts, and ends
with the command that reproduces the run when one is known (a run's manifest, or the plugin's
`pytest NODEID --maildrill-seed N`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from maildrill.harness.analysis import Analysis, analyze
from maildrill.harness.analysis.join import join
from maildrill.harness.events import Event

Events = Iterable[Event] | Any


def _load(source: Events) -> tuple[list[Event], dict[str, Any] | None, str | None]:
    reproduce = getattr(source, "reproduce", None)
    if isinstance(source, str | Path):
        import json

        from maildrill.harness.store import EventStore

        run = Path(source)
        manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
        scenario = json.loads((run / "scenario.json").read_text()) if (run / "scenario.json").exists() else None
        return EventStore(run / "events").events(), scenario, manifest.get("reproduce")
    if hasattr(source, "events") and callable(source.events):
        return list(source.events()), getattr(source, "scenario", None), reproduce
    return list(source), None, reproduce


def _fail(title: str, analysis: Analysis, rule: str, reproduce: str | None, limit: int = 20) -> None:
    bad = [o for o in analysis.offenders if o.rule == rule]
    lines = [f"{title}: {len(bad)} message(s)"]
    lines += [f"  {o.corr}{f' ({o.cls})' if o.cls else ''}: {o.detail}" for o in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    if reproduce:
        lines.append(f"reproduce: {reproduce}")
    raise AssertionError("\n".join(lines))


def assert_no_duplicates(events: Events) -> None:
    """No message was accepted twice (across every MTA): a 250 seen means do not send it again."""
    evs, scenario, reproduce = _load(events)
    a = analyze(evs, scenario)
    if a.metrics.get("duplicates"):
        _fail(f"{a.metrics['duplicates']} duplicate deliveries", a, "duplicates", reproduce)


def assert_no_5xx_retried(events: Events) -> None:
    """No message was attempted again after a permanent (5xx) reply for its recipient."""
    evs, scenario, reproduce = _load(events)
    a = analyze(evs, scenario)
    if a.metrics.get("permanent_failures_retried"):
        _fail("permanent failures (5xx) retried", a, "permanent_failures_retried", reproduce)


def assert_delivered_within(events: Events, ttl_s: float, cls: str | None = None) -> None:
    """Every message (of class `cls`) was delivered within `ttl_s` of its request (or, with no load events, of
    its first attempt)."""
    evs, scenario, reproduce = _load(events)
    classes = sorted({e.get("class") for e in evs if e.kind == "load.request.completed"} - {None}) or ["?"]
    scen = dict(scenario or {})
    scen["load"] = {"classes": [{"name": c, "ttl_s": ttl_s} for c in ([cls] if cls else classes)]}
    a = analyze(evs, scen)
    if cls is None and classes == ["?"]:  # no load events: classes are unknown, judge every message
        late = [m for m in a.offenders if m.rule in ("undelivered",)]
        lat = [x for v in a.latencies_s.values() for x in v]
        slow = [x for x in lat if x > ttl_s]
        if late or slow:
            lines = [f"{len(late) + len(slow)} message(s) not delivered within {ttl_s:g} s"]
            lines += [f"  {o.corr}: {o.detail}" for o in late[:20]]
            if slow:
                lines.append(f"  {len(slow)} delivered late; slowest {max(slow):.2f} s")
            if reproduce:
                lines.append(f"reproduce: {reproduce}")
            raise AssertionError("\n".join(lines))
        return
    expired = a.value("otp_expired", cls) if cls else a.metrics.get("otp_expired")
    if expired:
        _fail(f"not delivered within {ttl_s:g} s", a, "otp_expired", reproduce)


def assert_backs_off_after_421(events: Events, max_attempts_per_min: float) -> None:
    """After an MTA answered 421 (throttling), the sender made at most `max_attempts_per_min` attempts to that
    MTA in any 60 s window starting at a 421."""
    evs, _, reproduce = _load(events)
    j = join(evs)  # on the events' own clock: the window is 60 event seconds
    starts: dict[str, list[float]] = defaultdict(list)
    for a in j.attempts:
        starts[a.mta].append(a.start)
    worst: tuple[int, str, float] | None = None
    for mta, marks in j.throttled.items():
        times = starts[mta]
        for t in marks:
            n = sum(1 for s in times if t < s <= t + 60.0)
            if n > max_attempts_per_min and (worst is None or n > worst[0]):
                worst = (n, f"mta/{mta}", t)
    if worst is not None:
        n, mta, t = worst
        msg = (f"{n} attempts to {mta} within 60 s after its 421 at t={t:.2f} s (allowed {max_attempts_per_min:g}): "
               f"the sender does not back off")
        if reproduce:
            msg += f"\nreproduce: {reproduce}"
        raise AssertionError(msg)
