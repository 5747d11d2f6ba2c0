"""Thresholds and the analysis → a verdict: pass/fail per threshold with the measured value and the reason.

A threshold is a scenario entry ``name: {max: x}`` / ``{min: x}`` (or both), where the name is a metric
from `maildrill.harness.analysis.METRICS`, optionally narrowed to a class or an MTA: ``latency_p99_s[otp]``,
``duplicates[backup]``. A metric that could not be measured (null) fails its threshold: a drill that
could not show the property holds has not shown it. A run that did not complete cannot pass.

Across the N runs of `maildrill run --repeat N`, `evaluate_repeats` turns the runs' own checks into a stability
verdict: per threshold stable pass, stable fail or flaky (k of N passed), or, for a threshold with
``over: min|median|mean|p90|max``, pass/fail of that statistic across the runs (`over` plays no part in one run).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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


def _split(threshold: str) -> tuple[str, str | None]:
    m = _NAME.match(threshold)
    return (m["metric"], m["scope"]) if m else (threshold, None)


def _judge(value: Value, hi: float | None, lo: float | None, metric: str, scope: str | None) -> tuple[bool, str]:
    """Is `value` within the limits, and the reason in words ("3.2 s > max 2", "never: ...")."""
    unit = METRICS[metric].unit
    if value is None:
        where = f" in {scope!r}" if scope else ""
        why = NULL_MEANS.get(metric, "not measured")
        return False, f"{format_value(None, unit, metric)}{where}: {why}"
    shown = format_value(value, unit)
    if hi is not None and value > hi:
        return False, f"{shown} > max {_limit(hi)}"
    if lo is not None and value < lo:
        return False, f"{shown} < min {_limit(lo)}"
    bounds = " and ".join(b for b in (f">= min {_limit(lo)}" if lo is not None else "",
                                      f"<= max {_limit(hi)}" if hi is not None else "") if b)
    return True, f"{shown} {bounds}"


def check(threshold: str, spec: Mapping[str, Any], analysis: Analysis) -> Check:
    """One run against one threshold. `over` (a statistic across repeated runs) plays no part in one run."""
    metric, scope = _split(threshold)
    hi, lo = spec.get("max"), spec.get("min")
    if metric not in METRICS:
        return Check(threshold, metric, scope, hi, lo, None, False, f"unknown metric {metric!r}")
    value = analysis.value(metric, scope)
    passed, reason = _judge(value, hi, lo, metric, scope)
    return Check(threshold, metric, scope, hi, lo, value, passed, reason)


def evaluate(analysis: Analysis, thresholds: Mapping[str, Mapping[str, Any]], *,
             run_status: str = "completed") -> Verdict:
    """One `Check` per threshold, in the scenario's order."""
    return Verdict(tuple(check(name, spec, analysis) for name, spec in thresholds.items()), run_status)


# --- repeated runs: a stability verdict across the N runs of `maildrill run --repeat N` -------------------------
class Outcome(StrEnum):
    PASS = "pass"  # held in every run (or, with `over`, the statistic across runs held)
    FAIL = "fail"  # failed in every run (or the statistic failed): the system broke
    FLAKY = "flaky"  # held in some runs and not in others: the verdict of one run is noise


def _nearest_rank(q: float) -> Callable[[list[Value]], Value]:
    return lambda ranked: ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def _median(ranked: list[Value]) -> Value:
    n = len(ranked)
    if n % 2:
        return ranked[n // 2]
    a, b = ranked[n // 2 - 1], ranked[n // 2]
    return None if a is None or b is None else (a + b) / 2


def _mean(ranked: list[Value]) -> Value:
    return None if any(v is None for v in ranked) else statistics.fmean(ranked)  # type: ignore[arg-type]


# the statistics a threshold's `over` takes; p90 is the nearest rank (the ceil(0.9 N)-th smallest: with fewer
# than 10 runs, the largest)
STATISTICS: dict[str, Callable[[list[Value]], Value]] = {
    "min": lambda ranked: ranked[0], "median": _median, "mean": _mean, "p90": _nearest_rank(0.9),
    "max": lambda ranked: ranked[-1]}


def ranked(values: Sequence[Value], *, nulls_high: bool = True) -> list[Value]:
    """The values in ascending order, the nulls (not measured: it failed) on the failing side: above everything for
    a threshold with a max, below everything for one with only a min."""
    measured = sorted(v for v in values if v is not None)
    nulls: list[Value] = [None] * (len(values) - len(measured))
    return [*measured, *nulls] if nulls_high else [*nulls, *measured]


def statistic(over: str, values: Sequence[Value], *, nulls_high: bool = True) -> Value:
    """`over` (min, median, mean, p90, max) of one metric's values across runs; null when it lands on a run whose
    value is null (for the mean: when any is). Raises ValueError for no values or an unknown statistic."""
    if not values:
        raise ValueError("no values: a statistic needs at least one run")
    if over not in STATISTICS:
        raise ValueError(f"unknown statistic {over!r}; known: {', '.join(STATISTICS)}")
    return STATISTICS[over](ranked(values, nulls_high=nulls_high))


@dataclass(frozen=True)
class Member:
    """One run of a repeat, as the stability verdict sees it: its status and its own checks (one per threshold)."""

    run_id: str
    seed: int | None
    status: str
    checks: tuple[Check, ...]

    def check_of(self, threshold: str) -> Check | None:
        return next((c for c in self.checks if c.threshold == threshold), None)


@dataclass(frozen=True)
class Spread:
    min: Value
    median: Value
    max: Value


@dataclass(frozen=True)
class RepeatCheck:
    """One threshold across the runs: each run's value and result, their spread, and the stability outcome."""

    threshold: str
    metric: str
    scope: str | None
    max: float | None
    min: float | None
    over: str | None
    values: tuple[Value, ...]  # per run, in run order
    passed_runs: tuple[bool, ...]  # per run: the run's own check
    spread: Spread
    statistic: Value  # the `over` statistic (None without `over`)
    outcome: Outcome
    reason: str  # "13.3 s / 19 s / 32.9 s (min / median / max of 5 runs); max 30", "p90 27.1 s <= max 30 (...)"

    @property
    def runs_passed(self) -> int:
        return sum(self.passed_runs)

    @property
    def label(self) -> str:
        """stable pass | stable fail | flaky (k of N passed) | pass on p90 | fail on p90"""
        if self.over is not None:
            return f"{self.outcome.value} on {self.over}"
        if self.outcome is Outcome.FLAKY:
            return f"flaky ({self.runs_passed} of {len(self.values)} passed)"
        return f"stable {self.outcome.value}"


def limits_text(hi: float | None, lo: float | None) -> str:
    """The limits in words: 'max 30', 'min 1 and max 5'."""
    return " and ".join(b for b in (f"min {_limit(lo)}" if lo is not None else "",
                                    f"max {_limit(hi)}" if hi is not None else "") if b)


def _across(values: Sequence[bool]) -> Outcome:
    k = sum(values)
    return Outcome.PASS if values and k == len(values) else Outcome.FAIL if k == 0 else Outcome.FLAKY


def repeat_check(threshold: str, spec: Mapping[str, Any], members: Sequence[Member]) -> RepeatCheck:
    metric, scope = _split(threshold)
    hi, lo, over = spec.get("max"), spec.get("min"), spec.get("over")
    own = [m.check_of(threshold) for m in members]
    values = tuple(c.value if c is not None else None for c in own)
    passed = tuple(c is not None and c.passed for c in own)
    if metric not in METRICS or not members:
        why = f"unknown metric {metric!r}" if metric not in METRICS else "no runs"
        return RepeatCheck(threshold, metric, scope, hi, lo, over, values, passed, Spread(None, None, None), None,
                           Outcome.FAIL, why)
    high = hi is not None or lo is None
    spread = Spread(*(statistic(s, values, nulls_high=high) for s in ("min", "median", "max")))
    unit = METRICS[metric].unit
    shown = " / ".join(format_value(v, unit, metric) for v in (spread.min, spread.median, spread.max))
    n = len(values)
    of_n = f"(min / median / max of {n} run{'s' if n != 1 else ''})"
    if over is None:
        return RepeatCheck(threshold, metric, scope, hi, lo, None, values, passed, spread, None, _across(passed),
                           f"{shown} {of_n}; {limits_text(hi, lo)}")
    stat = statistic(over, values, nulls_high=high)
    ok, why = _judge(stat, hi, lo, metric, scope)
    return RepeatCheck(threshold, metric, scope, hi, lo, over, values, passed, spread, stat,
                       Outcome.PASS if ok else Outcome.FAIL,
                       f"{over} of the runs: {why}; {shown} {of_n}, {sum(passed)} of {n} within")


@dataclass(frozen=True)
class Stability:
    """The verdict of N runs of one scenario: per threshold pass / fail / flaky, and the runs' statuses.

    Overall: `fail` (stable fail) when the runs' statuses or any threshold failed in every run (or its statistic
    failed); else `flaky` when any is flaky; else `pass` (stable pass). A repeat stopped before its N runs cannot
    pass. `runs_passed` counts the runs that completed and met every threshold without `over`."""

    checks: tuple[RepeatCheck, ...]
    statuses: tuple[str, ...]  # per run
    runs_requested: int
    stopped: str | None = None  # why fewer runs than requested were made

    @property
    def runs(self) -> int:
        return len(self.statuses)

    @property
    def status_outcome(self) -> Outcome:
        return _across([s == "completed" for s in self.statuses])

    @property
    def runs_passed(self) -> int:
        plain = [c for c in self.checks if c.over is None]
        return sum(1 for i, s in enumerate(self.statuses) if s == "completed" and all(c.passed_runs[i] for c in plain))

    @property
    def outcome(self) -> Outcome:
        outcomes = [self.status_outcome, *(c.outcome for c in self.checks)]
        if Outcome.FAIL in outcomes:  # no runs at all: the statuses fail
            return Outcome.FAIL
        return Outcome.FLAKY if Outcome.FLAKY in outcomes else Outcome.PASS

    @property
    def label(self) -> str:
        """stable pass | stable fail | flaky (k of N passed)"""
        if self.outcome is Outcome.FLAKY:
            return f"flaky ({self.runs_passed} of {self.runs} passed)"
        return f"stable {self.outcome.value}"

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS and self.stopped is None

    @property
    def exit_code(self) -> int:
        """0 stable pass; 1 stable fail or flaky (a flaky gate is not a passing one; the JUnit failure type and
        summary.json tell the two apart)."""
        return EXIT_PASS if self.passed else EXIT_FAILED

    def status_text(self) -> str:
        done = sum(s == "completed" for s in self.statuses)
        others = ", ".join(f"{k} {s}" for s, k in sorted(Counter(s for s in self.statuses if s != "completed").items()))
        return f"{done} of {self.runs} runs completed" + (f" ({others})" if others else "")

    def summary_lines(self) -> list[str]:
        n, t = self.runs, len(self.checks)
        fails = [c for c in self.checks if c.outcome is Outcome.FAIL]
        flaky = [c for c in self.checks if c.outcome is Outcome.FLAKY]
        head = f"{self.label.upper()}: "
        if self.outcome is Outcome.PASS:
            head += (f"every threshold held in all {n} runs" if t else f"all {n} runs completed (no thresholds)")
        else:
            said = []
            if fails:
                said.append(f"{len(fails)} of {t} threshold{'s' if t != 1 else ''} failed")
            if flaky:
                said.append(f"{len(flaky)} of {t} threshold{'s' if t != 1 else ''} flaky")
            if self.status_outcome is not Outcome.PASS:
                said.append(self.status_text())
            head += "; ".join(said) or f"{self.status_text()}"
        if self.stopped:
            head += f" — stopped after {n} of {self.runs_requested} runs: {self.stopped}"
        width = max([len(c.label) for c in self.checks] + [11])
        return [head] + [f"  {c.label:<{width}}  {c.threshold}: {c.reason}" for c in self.checks]


def evaluate_repeats(thresholds: Mapping[str, Mapping[str, Any]], members: Sequence[Member], *,
                     runs_requested: int | None = None, stopped: str | None = None) -> Stability:
    """One `RepeatCheck` per threshold, in the scenario's order, over the members in run order."""
    return Stability(tuple(repeat_check(name, spec, members) for name, spec in thresholds.items()),
                     tuple(m.status for m in members), runs_requested or len(members), stopped)
