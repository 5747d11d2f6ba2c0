"""`analyze(events, scenario)`: the join (`join`) tells every message's story in one pass over the events; the
measures — drain, retries, duplicates, latency/OTP, faults, per MTA, series — each read that join; this module
puts their numbers under the metric names of `maildrill.harness.metrics`. Pure: no I/O, no clock; the same
events in any order give the same result.

outstanding(t) = messages requested by t and not resolved by t (the "requested - delivered" of a queue, with
bounced messages counted as resolved so that a drill with hard bounces can still drain).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from maildrill.harness.analysis import columns, drain, duplicates, faults, latency, retries
from maildrill.harness.analysis.columns import Columns, Flags, percentiles, sorted_list
from maildrill.harness.analysis.join import Join, Origin, join, join_records, origin_of
from maildrill.harness.analysis.model import Analysis, FaultWindow, Series, Value
from maildrill.harness.analysis.offenders import offenders
from maildrill.harness.analysis.per_mta import by_mta
from maildrill.harness.analysis.series import MAX_BINS, run_series
from maildrill.harness.analysis.split import join_files
from maildrill.harness.events import Event
from maildrill.harness.store import ReadProblem


@dataclass(frozen=True)
class Plan:
    """What the scenario says about the analysis: the load phase's end, the classes and their ttl_s, the MTAs."""

    load_end: float
    ttl: Mapping[str, float]
    classes: tuple[str, ...]
    mtas: tuple[str, ...]


def analyze(events: Iterable[Event], scenario: Mapping[str, Any] | None = None, *,
            skipped: Sequence[str] = (), run_events: Sequence[Event] | None = None) -> Analysis:
    """`run_events`: the run's own events (source "run": phases, timeline), when `events` is a one-pass stream
    (EventStore.stream) — the time origin comes from them, and `events` is then read exactly once."""
    scenario = scenario or {}
    if run_events is None:
        events = events if isinstance(events, list) else list(events)
        run_events = events
    origin = origin_of(run_events, scenario)
    return _analyze(join(events, origin), origin, scenario, skipped)


def analyze_records(records: Iterable[dict[str, Any]], scenario: Mapping[str, Any] | None = None, *,
                    run_events: Sequence[Event], skipped: Sequence[str] = (),
                    again: Callable[[], Iterable[dict[str, Any]]] | None = None) -> Analysis:
    """`analyze` over flat event records read from disk (`EventStore.records`): the same result, without an
    `Event` per line (what `maildrill report` uses). `run_events` give the time origin; `again` reads the records
    once more (`join_records`: then only a drill whose vendors sent webhooks is read twice)."""
    scenario = scenario or {}
    origin = origin_of(run_events, scenario)
    return _analyze(join_records(records, origin, again=again), origin, scenario, skipped)


def analyze_files(files: list[Path], scenario: Mapping[str, Any] | None = None, *, run_events: Sequence[Event],
                  problems: list[ReadProblem], skipped: Sequence[str] = (),
                  again: Callable[[], Iterable[dict[str, Any]]] | None = None) -> Analysis:
    """`analyze_records` over a run's event files (`EventStore.files()`, in that order), read by two processes
    when the run is big (`analysis.split`): the same result. Unreadable lines are appended to `problems`."""
    scenario = scenario or {}
    origin = origin_of(run_events, scenario)
    return _analyze(join_files(files, origin, problems, again=again), origin, scenario, skipped)


def _analyze(j: Join, origin: Origin, scenario: Mapping[str, Any], skipped: Sequence[str]) -> Analysis:
    plan = _plan(j, origin, scenario)
    end = max(j.t_last, plan.load_end)
    windows = faults.windows(j.fired, j.undone, end)
    fault_end = max((w.end_s for w in windows), default=None)
    drain_ref = max(plan.load_end, fault_end) if fault_end is not None else plan.load_end
    c = columns.build(j, plan.classes)
    whole = message_metrics(c, None, None, len(j.attempts), plan.ttl, drain_ref,
                            discarded=sum(j.discarded_by_mta.values()), has_ttl=bool(plan.ttl))
    bins = min(MAX_BINS, max(1, math.ceil(end)))
    series = run_series(j, c, bins)
    notes = list(origin.notes)
    if not j.requests:
        notes.append("no load events: nothing was requested, so message metrics are empty")
    expired = latency.expired_flags(c, plan.ttl)
    return Analysis(
        metrics=whole | run_wide_metrics(j, c, windows, series["attempts"]),
        by_class=_by_class(j, c, plan, drain_ref, whole),
        by_mta=by_mta(plan.mtas, j.attempts, c, j.discarded_by_mta, j.silent_failovers_by_mta),
        windows=tuple(faults.with_app_side(w, c) for w in windows), load_window=(0.0, plan.load_end),
        series=series, retry_intervals_s=tuple(retries.intervals(c)),
        latencies_s=_latencies_by_class(c),
        ttl_s=plan.ttl,
        # only the messages some rule flags can be offenders (the same ones, in the same order)
        offenders=tuple(offenders(c.pick(None, c.accepted_again, c.bounced, expired, ~c.delivered), plan.ttl)),
        skipped=tuple(skipped), time_scale=origin.scale, notes=tuple(notes))


def _plan(j: Join, origin: Origin, scenario: Mapping[str, Any]) -> Plan:
    if "duration_s" in scenario:
        load_end = float(scenario["duration_s"])
    elif origin.drain_started is not None:
        load_end = origin.at(origin.drain_started)
    else:
        load_end = max((r.t for r in j.requests), default=0.0)
    ttl = {str(c["name"]): float(c["ttl_s"]) for c in scenario.get("load", {}).get("classes", [])
           if "name" in c and "ttl_s" in c}
    classes = list(ttl) + sorted({m.cls for m in j.messages.values() if m.cls and m.cls not in ttl})
    # the scenario's MTAs and fake email-API vendors: both record as `mta/<name>` and are scoped alike
    mtas = sorted(j.mtas_seen | {str(r["name"]) for key in ("mtas", "vendors") for r in scenario.get(key, [])
                                 if "name" in r})
    return Plan(load_end, ttl, tuple(classes), tuple(mtas))


def message_metrics(c: Columns, mask: Flags | None, requests: Flags | None, attempts: int,
                    ttl: Mapping[str, float], drain_ref: float, *, discarded: int, has_ttl: bool) -> dict[str, Value]:
    """The metrics of a set of messages (`mask`: the run's when None, else one class's) and requests
    (`requests`, likewise), in the registry's order; `attempts`: how many delivery attempts they had (the run's:
    every attempt, also those that named no requested id)."""
    n = len(c.messages) if mask is None else int(np.count_nonzero(mask))
    delivered = int(np.count_nonzero(c.delivered if mask is None else c.delivered & mask))
    req_p50, req_p99 = percentiles(c.req_latency if requests is None else c.req_latency[requests], 50, 99)
    return {
        "requests_total": len(c.req_t) if requests is None else int(np.count_nonzero(requests)),
        "messages_requested": n,
        "delivered": delivered,
        "undelivered": n - delivered,
        "acknowledged_but_lost": discarded,
        **drain.drain(*drain.steps(c, mask), drain_ref).metrics(n),
        **retries.retries(c, mask, attempts).metrics(),
        **duplicates.duplicates(c.pick(mask, c.accepted_again)).metrics(),
        **latency.measure(c, mask, ttl, has_ttl=has_ttl).metrics(),
        "http_error_ratio": faults.error_ratio(~(c.req_ok if requests is None else c.req_ok[requests])),
        "request_latency_p50_ms": req_p50,
        "request_latency_p99_ms": req_p99,
    }


def _by_class(j: Join, c: Columns, plan: Plan, drain_ref: float,
              whole: Mapping[str, Value]) -> dict[str, dict[str, Value]]:
    """Per class, `message_metrics` of its messages, requests and attempts. A class that is every message, every
    request and every attempt (a one-class drill) has the run's figures: they are taken from `whole` (the run's
    `message_metrics`) rather than measured again, which was half of the measures' time."""
    out = {}
    for cls in plan.classes:
        mine, reqs = c.of_class(cls), c.requests_of_class(cls)
        k = c.class_index(cls)
        discarded, attempts = c.discarded_by_class[k], c.attempts_by_class[k]  # `message_metrics` reads how many
        if (int(np.count_nonzero(mine)) == len(c.messages) and attempts == len(j.attempts)
                and (cls in plan.ttl) == bool(plan.ttl) and int(np.count_nonzero(reqs)) == len(c.req_t)):
            out[cls] = {**whole, "acknowledged_but_lost": discarded}
            continue
        out[cls] = message_metrics(c, mine, reqs, attempts, plan.ttl, drain_ref, discarded=discarded,
                                   has_ttl=cls in plan.ttl)
    return out


def _latencies_by_class(c: Columns) -> dict[str, tuple[float, ...]]:
    """Per class, the sorted latencies of its delivered messages."""
    return {cls: tuple(sorted_list(c.latency[c.of_class(cls) & c.delivered])) for cls in c.classes}


def run_wide_metrics(j: Join, c: Columns, windows: Sequence[FaultWindow], attempts_per_s: Series) -> dict[str, Value]:
    """The metrics that only make sense for the whole run: the attempt rate, the queue probe, the app side in
    fault windows."""
    attempts = j.attempts
    outcomes = attempts.outcomes()
    storm = faults.storm_start(windows, attempts)
    in_fault = np.logical_or.reduce([faults.inside(w, c.req_t) for w in windows]) if windows else None
    per_s = attempts_per_s.values
    return {
        "deferred_ratio": outcomes.count("4xx") / len(attempts) if attempts else None,
        "attempts_per_s_peak": max(per_s) if attempts else 0,
        "attempts_per_s_peak_after_fault": max(per_s[max(0, int(storm)):], default=0) if storm is not None else None,
        "queue_depth_peak": max((d for _, d in j.depth), default=None),
        "first_delivery_s": float(c.first_acc[c.delivered].min()) if c.delivered.any() else None,
        "last_delivery_s": max(float(c.first_acc[c.delivered].max()), float(c.again_t.max(initial=-math.inf)))
        if c.delivered.any() else None,
        "http_error_ratio_in_faults": faults.error_ratio(~c.req_ok[in_fault]) if in_fault is not None else None,
        "request_latency_p99_ms_in_faults":
            percentiles(c.req_latency[in_fault], 99)[0] if in_fault is not None else None,
        **j.webhook_metrics,
    }
