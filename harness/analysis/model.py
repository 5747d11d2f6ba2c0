"""What the analysis produces: the frozen result. The metric names it fills in are declared in
`maildrill.harness.metrics` (re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from maildrill.harness.metrics import METRICS, Better, MetricInfo, Value

__all__ = ["METRICS", "Analysis", "Better", "FaultWindow", "MetricInfo", "Offender", "Series", "Value"]


@dataclass(frozen=True)
class FaultWindow:
    """A timeline action in force: from its firing to its undoing (or the next action on the same target, or the
    end)."""

    target: str  # "mta/primary", "proxy/primary"
    what: str  # the action's label, e.g. "set throttle"
    start_s: float
    end_s: float
    requests: int = 0  # load requests completed inside the window (the app side during this fault)
    http_error_ratio: float | None = None
    request_latency_p99_ms: float | None = None


@dataclass(frozen=True)
class Series:
    """A time series in 1 s bins (scenario time, from the start of the load phase): value i covers
    [t_s[i], t_s[i]+1)."""

    t_s: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Offender:
    """One message a rule flags, with what happened to it (for assertion messages and report tables)."""

    corr: str
    cls: str | None
    rule: str  # the metric it counts towards, e.g. "duplicates", "permanent_failures_retried", "otp_expired"
    detail: str  # one line: "accepted by primary at 3.20 s (ack lost), by backup at 8.41 s"


@dataclass(frozen=True)
class Analysis:
    """Everything the reports show. `metrics` is run-wide; `by_class`/`by_mta` hold the scoped values
    (only metrics whose scopes include "class"/"mta"). Values are int, float or None (not measurable)."""

    metrics: Mapping[str, Value]
    by_class: Mapping[str, Mapping[str, Value]]
    by_mta: Mapping[str, Mapping[str, Value]]
    windows: tuple[FaultWindow, ...]
    load_window: tuple[float, float] | None  # load phase start/end, scenario seconds since load start (0, duration)
    series: Mapping[str, Series]  # "requests", "delivered", "outstanding", "attempts", "deferred_ratio",
    #                               "replies_2xx", "replies_4xx", "replies_5xx", "queue_depth" (when probed)
    retry_intervals_s: tuple[float, ...]
    latencies_s: Mapping[str, tuple[float, ...]]  # per class, sorted, delivered messages only
    ttl_s: Mapping[str, float]  # per class
    offenders: tuple[Offender, ...]
    skipped: tuple[str, ...]  # "events/mta-primary.jsonl:17: not JSON (half-written line?)" — what was not analysed
    time_scale: float = 1.0
    notes: tuple[str, ...] = field(default=())  # things a reader should know (e.g. "no load events: nothing requested")

    def value(self, name: str, scope: str | None = None) -> Value:
        """The metric's value, run-wide or in one class's/MTA's scope."""
        if scope is None:
            return self.metrics.get(name)
        if scope in self.by_class:
            return self.by_class[scope].get(name)
        return self.by_mta.get(scope, {}).get(name)
