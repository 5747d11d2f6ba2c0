"""Thresholds → verdict: every check says what was measured against what, and why it failed."""

from __future__ import annotations

from maildrill.harness.analysis.model import Analysis
from maildrill.harness.verdict import Check, evaluate


def analysis(metrics: dict, by_class: dict | None = None, by_mta: dict | None = None) -> Analysis:
    return Analysis(metrics=metrics, by_class=by_class or {}, by_mta=by_mta or {}, windows=(), load_window=(0, 10),
                    series={}, retry_intervals_s=(), latencies_s={}, ttl_s={}, offenders=(), skipped=())


def test_each_threshold_becomes_one_check_in_scenario_order() -> None:
    a = analysis({"duplicates": 0, "retry_sync_index": 0.91, "drain_s": None},
                 by_class={"otp": {"latency_p99_s": 3.25}}, by_mta={"backup": {"duplicates": 2}})
    v = evaluate(a, {"duplicates": {"max": 0}, "latency_p99_s[otp]": {"max": 2}, "retry_sync_index": {"max": 0.5},
                     "duplicates[backup]": {"max": 0}, "drain_s": {"max": 60}, "delivered": {"min": 1, "max": 5}})
    assert v.checks == (
        Check("duplicates", "duplicates", None, 0, None, 0, True, "0 <= max 0"),
        Check("latency_p99_s[otp]", "latency_p99_s", "otp", 2, None, 3.25, False, "3.25 s > max 2"),
        Check("retry_sync_index", "retry_sync_index", None, 0.5, None, 0.91, False, "0.91 > max 0.5"),
        Check("duplicates[backup]", "duplicates", "backup", 0, None, 2, False, "2 > max 0"),
        Check("drain_s", "drain_s", None, 60, None, None, False,
              "never: messages were still outstanding when the run ended"),
        Check("delivered", "delivered", None, 5, 1, None, False, "null: not measured"),
    )
    assert not v.passed and v.exit_code == 1
    assert v.summary_lines()[:3] == ["FAIL: 5 of 6 thresholds failed", "  ok   duplicates: 0 <= max 0",
                                     "  FAIL latency_p99_s[otp]: 3.25 s > max 2"]


def test_min_and_max_both_checked() -> None:
    a = analysis({"delivered": 7})
    assert evaluate(a, {"delivered": {"min": 10}}).checks[0].reason == "7 < min 10"
    assert evaluate(a, {"delivered": {"min": 1, "max": 9}}).checks[0].reason == "7 >= min 1 and <= max 9"


def test_pass_needs_a_completed_run() -> None:
    a = analysis({"duplicates": 0})
    assert evaluate(a, {"duplicates": {"max": 0}}).passed
    assert evaluate(a, {"duplicates": {"max": 0}}).exit_code == 0
    degraded = evaluate(a, {"duplicates": {"max": 0}}, run_status="degraded")
    assert not degraded.passed and degraded.exit_code == 1
    assert degraded.summary_lines()[0] == "FAIL: the run is degraded, so it cannot pass"
    assert evaluate(a, {}).summary_lines() == ["PASS (the scenario has no thresholds)"]


def test_unknown_metric_fails_loudly() -> None:
    check = evaluate(analysis({}), {"nonsense": {"max": 1}}).checks[0]
    assert (check.passed, check.reason) == (False, "unknown metric 'nonsense'")
