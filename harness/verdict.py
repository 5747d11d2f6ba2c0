"""Thresholds and the analysis → a verdict: pass/fail per threshold with the measured value and the reason.

A threshold is a scenario entry ``name: {max: x}`` / ``{min: x}`` (or both), where the name is a metric
from `maildrill.harness.analysis.METRICS`, optionally narrowed to a class or an MTA: ``latency_p99_s[otp]``,
``duplicates[backup]``. A metric that could not be measured (null) fails its threshold: a drill that
could not show the property holds has not shown it. A run that did not complete cannot pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from maildrill.harness.analysis.model import METRICS, Analysis, Value
from maildrill.harness.errors import EXIT_FAILED, EXIT_PASS

_LATENCIES = tuple(f"latency_{p}_s" for p in ("p50", "p95", "p99", "max"))
# what a null value means, per metric (else: "not measured")
NULL_MEANS = {
    "drain_s": "messages were still outstanding when the run ended",
    "retry_sync_index": "fewer than 5 retries: nothing to measure",
    "otp_expired": "no class has a ttl_s", "otp_expired_ratio": "no class has a ttl_s",
    **dict.fromkeys(_LATENCIES, "at that percentile messages were never delivered (or none were requested)"),
    "queue_depth_peak": "the scenario has no sut.queue_depth probe",
}
# how a null value reads in tables, where null has one meaning a person needs to see (else: "null")
NULL_SHOWN = {"drain_s": "never", **dict.fromkeys(_LATENCIES, "never")}
_NAME = re.compile(r"^(?P<metric>[a-z0-9_]+)(?:\[(?P<scope>[^\]]+)\])?$")


@dataclass(frozen=True)
class Check:
    threshold: str  # as written: "latency_p99_s[otp]"
    metric: str
    scope: str | None
    max: float | None
    min: float | None
    value: Value
    passed: bool
    reason: str  # "3.2 s > max 2 s", "0 <= max 0", "not measured (no retries)"


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    run_status: str = "completed"  # completed | degraded | failed | interrupted

    @property
    def passed(self) -> bool:
        return self.run_status == "completed" and all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_FAILED

    def summary_lines(self) -> list[str]:
        n = len(self.checks)
        failed = self.failed_checks
        if self.passed:
            head = f"PASS: {n} threshold{'s' if n != 1 else ''} met" if n else "PASS (the scenario has no thresholds)"
        elif self.run_status != "completed" and not failed:
            head = f"FAIL: the run is {self.run_status}, so it cannot pass"
        else:
            head = f"FAIL: {len(failed)} of {n} threshold{'s' if n != 1 else ''} failed"
            if self.run_status != "completed":
                head += f" (and the run is {self.run_status})"
        return [head] + [f"  {'ok  ' if c.passed else 'FAIL'} {c.threshold}: {c.reason}" for c in self.checks]


def format_value(value: Value, unit: str = "", metric: str = "") -> str:
    if value is None:
        return NULL_SHOWN.get(metric, "null")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        text = str(value)
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit in ("s", "ms", "1/s") else text


def _limit(x: float) -> str:
    return f"{x:g}"


def check(threshold: str, spec: Mapping[str, float | None], analysis: Analysis) -> Check:
    m = _NAME.match(threshold)
    metric, scope = (m["metric"], m["scope"]) if m else (threshold, None)
    hi, lo = spec.get("max"), spec.get("min")
    info = METRICS.get(metric)
    if info is None:
        return Check(threshold, metric, scope, hi, lo, None, False, f"unknown metric {metric!r}")
    value = analysis.value(metric, scope)
    unit = info.unit
    if value is None:
        where = f" in {scope!r}" if scope else ""
        why = NULL_MEANS.get(metric, "not measured")
        return Check(threshold, metric, scope, hi, lo, None, False, f"{format_value(None, unit, metric)}{where}: {why}")
    shown = format_value(value, unit)
    if hi is not None and value > hi:
        return Check(threshold, metric, scope, hi, lo, value, False, f"{shown} > max {_limit(hi)}")
    if lo is not None and value < lo:
        return Check(threshold, metric, scope, hi, lo, value, False, f"{shown} < min {_limit(lo)}")
    bounds = " and ".join(b for b in (f">= min {_limit(lo)}" if lo is not None else "",
                                      f"<= max {_limit(hi)}" if hi is not None else "") if b)
    return Check(threshold, metric, scope, hi, lo, value, True, f"{shown} {bounds}")


def evaluate(analysis: Analysis, thresholds: Mapping[str, Mapping[str, float | None]], *,
             run_status: str = "completed") -> Verdict:
    """One `Check` per threshold, in the scenario's order."""
    return Verdict(tuple(check(name, spec, analysis) for name, spec in thresholds.items()), run_status)
