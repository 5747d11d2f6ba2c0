"""The stability verdict of repeated runs (pure): statistics across runs, pass / fail / flaky per threshold and
overall, `over`, nulls, run statuses."""

from __future__ import annotations

import typing

import pytest
from maildrill.harness.analysis.model import Analysis
from maildrill.harness.errors import ScenarioError
from maildrill.harness.run.repeat import seeds_of
from maildrill.harness.scenario import parse_scenario_text
from maildrill.harness.scenario.models import OVER, ThresholdSpec
from maildrill.harness.verdict import (
    STATISTICS,
    Member,
    Outcome,
    RepeatCheck,
    Spread,
    evaluate,
    evaluate_repeats,
    statistic,
)

DRAIN = [13.3, 15.6, 19.0, 23.3, 32.9]  # drain_s of five runs of one drill on a loaded machine


def analysis(metrics: dict) -> Analysis:
    return Analysis(metrics=metrics, by_class={}, by_mta={}, windows=(), load_window=(0, 10), series={},
                    retry_intervals_s=(), latencies_s={}, ttl_s={}, offenders=(), skipped=())


def members(thresholds: dict, runs: list[dict], statuses: list[str] | None = None) -> list[Member]:
    statuses = statuses or ["completed"] * len(runs)
    return [Member(f"run{i}", 11 + i, status, evaluate(analysis(m), thresholds, run_status=status).checks)
            for i, (m, status) in enumerate(zip(runs, statuses, strict=True))]


def test_the_statistics_over_takes_are_the_ones_the_scenario_model_accepts() -> None:
    literal, none = typing.get_args(ThresholdSpec.model_fields["over"].annotation)  # Literal[...] | None
    assert none is type(None)
    assert tuple(STATISTICS) == OVER == typing.get_args(literal)


def test_statistics_of_measured_values() -> None:
    assert [statistic(s, DRAIN) for s in OVER] == [13.3, 19.0, pytest.approx(20.82), 32.9, 32.9]
    ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]
    assert [statistic(s, ten) for s in OVER] == [1, 5.5, 14.5, 9, 100]  # p90 of 10: the 9th smallest
    assert [statistic(s, [7]) for s in OVER] == [7, 7, 7, 7, 7]  # one run: every statistic is its value


def test_nulls_sit_on_the_failing_side() -> None:
    vals = [1, None, 3]
    assert [statistic(s, vals) for s in OVER] == [1, 3, None, None, None]  # a max threshold: null is above all
    assert [statistic(s, vals, nulls_high=False) for s in OVER] == [None, 1, None, 3, 3]  # min-only: below all
    assert statistic("p90", [*range(9), None]) == 8  # one null in ten runs: p90 tolerates it
    assert statistic("median", [1, None]) is None
    with pytest.raises(ValueError, match="no values"):
        statistic("max", [])
    with pytest.raises(ValueError, match="unknown statistic 'p99'; known: min, median, mean, p90, max"):
        statistic("p99", [1])


def test_a_threshold_that_holds_in_some_runs_only_is_flaky() -> None:
    th = {"duplicates": {"max": 0}, "drain_s": {"max": 30}}
    st = evaluate_repeats(th, members(th, [{"duplicates": 0, "drain_s": d} for d in DRAIN]))
    assert st.checks == (
        RepeatCheck("duplicates", "duplicates", None, 0, None, None, (0,) * 5, (True,) * 5, Spread(0, 0, 0), None,
                    Outcome.PASS, "0 / 0 / 0 (min / median / max of 5 runs); max 0"),
        RepeatCheck("drain_s", "drain_s", None, 30, None, None, tuple(DRAIN), (True, True, True, True, False),
                    Spread(13.3, 19.0, 32.9), None, Outcome.FLAKY,
                    "13.3 s / 19.0 s / 32.9 s (min / median / max of 5 runs); max 30"),
    )
    assert (st.outcome, st.label, st.runs_passed, st.passed, st.exit_code) == (
        Outcome.FLAKY, "flaky (4 of 5 passed)", 4, False, 1)
    assert [c.label for c in st.checks] == ["stable pass", "flaky (4 of 5 passed)"]
    assert st.summary_lines() == [
        "FLAKY (4 OF 5 PASSED): 1 of 2 thresholds flaky",
        "  stable pass            duplicates: 0 / 0 / 0 (min / median / max of 5 runs); max 0",
        "  flaky (4 of 5 passed)  drain_s: 13.3 s / 19.0 s / 32.9 s (min / median / max of 5 runs); max 30",
    ]


def test_a_threshold_that_fails_in_every_run_makes_a_stable_fail_whatever_else_is_flaky() -> None:
    th = {"duplicates": {"max": 0}, "drain_s": {"max": 30}}
    st = evaluate_repeats(th, members(th, [{"duplicates": 2 + i, "drain_s": d} for i, d in enumerate(DRAIN)]))
    assert [(c.threshold, c.outcome, c.label) for c in st.checks] == [
        ("duplicates", Outcome.FAIL, "stable fail"), ("drain_s", Outcome.FLAKY, "flaky (4 of 5 passed)")]
    assert (st.outcome, st.label, st.runs_passed, st.exit_code) == (Outcome.FAIL, "stable fail", 0, 1)
    assert st.summary_lines()[0] == "STABLE FAIL: 1 of 2 thresholds failed; 1 of 2 thresholds flaky"


def test_stable_pass_exits_0() -> None:
    th = {"drain_s": {"max": 40}}
    st = evaluate_repeats(th, members(th, [{"drain_s": d} for d in DRAIN]))
    assert (st.outcome, st.label, st.passed, st.exit_code, st.runs_passed) == (Outcome.PASS, "stable pass", True, 0, 5)
    assert st.summary_lines() == ["STABLE PASS: every threshold held in all 5 runs",
                                  "  stable pass  drain_s: 13.3 s / 19.0 s / 32.9 s (min / median / max of 5 runs); "
                                  "max 40"]


def test_over_judges_the_statistic_across_runs_not_each_run() -> None:
    th = {"drain_s": {"max": 30, "over": "p90"}}
    ten = [*DRAIN, 12.0, 14.0, 16.0, 18.0, 20.0]  # one run of ten over 30: p90 (the 9th smallest) is 23.3
    st = evaluate_repeats(th, members(th, [{"drain_s": d} for d in ten]))
    (c,) = st.checks
    assert (c.outcome, c.label, c.statistic, c.runs_passed, c.spread) == (
        Outcome.PASS, "pass on p90", 23.3, 9, Spread(12.0, 17.0, 32.9))
    assert c.reason == "p90 of the runs: 23.3 s <= max 30; 12.0 s / 17.0 s / 32.9 s (min / median / max of 10 runs), " \
                       "9 of 10 within"
    # the runs' own checks still say which run was over; the threshold alone does not make it flaky
    assert (st.outcome, st.label, st.runs_passed, st.exit_code) == (Outcome.PASS, "stable pass", 10, 0)
    five = evaluate_repeats(th, members(th, [{"drain_s": d} for d in DRAIN]))  # p90 of five runs is the largest
    assert [(c.outcome, c.label, c.statistic) for c in five.checks] == [(Outcome.FAIL, "fail on p90", 32.9)]
    assert five.label == "stable fail"


def test_over_with_a_null_run() -> None:
    th = {"drain_s": {"max": 30, "over": "median"}}
    st = evaluate_repeats(th, members(th, [{"drain_s": 10.0}, {"drain_s": None}, {"drain_s": 12.0}]))
    (c,) = st.checks
    assert (c.values, c.spread, c.statistic, c.outcome) == ((10.0, None, 12.0), Spread(10.0, 12.0, None), 12.0,
                                                            Outcome.PASS)
    assert c.reason == ("median of the runs: 12.0 s <= max 30; 10.0 s / 12.0 s / never (min / median / max of 3 "
                        "runs), 2 of 3 within")
    mean = evaluate_repeats({"drain_s": {"max": 30, "over": "mean"}},
                            members(th, [{"drain_s": 10.0}, {"drain_s": None}]))
    assert mean.checks[0].reason.startswith("mean of the runs: never: messages were still outstanding")
    assert mean.checks[0].outcome is Outcome.FAIL


def test_a_run_that_did_not_complete_makes_the_set_flaky_or_failed() -> None:
    th = {"duplicates": {"max": 0}}
    st = evaluate_repeats(th, members(th, [{"duplicates": 0}] * 3, ["completed", "degraded", "completed"]))
    assert (st.status_outcome, st.outcome, st.label, st.runs_passed) == (
        Outcome.FLAKY, Outcome.FLAKY, "flaky (2 of 3 passed)", 2)
    assert st.status_text() == "2 of 3 runs completed (1 degraded)"
    assert st.summary_lines()[0] == "FLAKY (2 OF 3 PASSED): 2 of 3 runs completed (1 degraded)"
    failed = evaluate_repeats(th, members(th, [{"duplicates": 0}] * 2, ["degraded", "interrupted"]))
    assert (failed.outcome, failed.label) == (Outcome.FAIL, "stable fail")
    assert evaluate_repeats(th, []).outcome is Outcome.FAIL


def test_a_repeat_stopped_early_cannot_pass() -> None:
    th = {"duplicates": {"max": 0}}
    st = evaluate_repeats(th, members(th, [{"duplicates": 0}] * 2), runs_requested=5,
                          stopped="run 3 (seed 13) interrupted: Ctrl-C")
    assert (st.outcome, st.passed, st.exit_code) == (Outcome.PASS, False, 1)
    assert st.summary_lines()[0] == ("STABLE PASS: every threshold held in all 2 runs — stopped after 2 of 5 runs: "
                                     "run 3 (seed 13) interrupted: Ctrl-C")


def test_no_thresholds() -> None:
    st = evaluate_repeats({}, members({}, [{}, {}]))
    assert (st.label, st.exit_code, st.summary_lines()) == ("stable pass", 0, ["STABLE PASS: all 2 runs completed "
                                                                               "(no thresholds)"])


def test_over_plays_no_part_in_a_single_run() -> None:
    a = analysis({"drain_s": 31.0})
    assert evaluate(a, {"drain_s": {"max": 30, "over": "p90"}}) == evaluate(a, {"drain_s": {"max": 30}})


def test_seeds_of_a_repeat() -> None:
    assert seeds_of(421, 4, same_seed=False) == [421, 422, 423, 424]
    assert seeds_of(421, 3, same_seed=True) == [421, 421, 421]


SCENARIO = """\
version: 1
name: tiny
duration_s: 2
mtas: [{name: primary}]
load:
  shape: {kind: burst, count: 2}
  classes: [{name: otp, smtp: {host: 127.0.0.1, port: 2525}}]
thresholds:
  drain_s: {max: 30, over: OVER}
"""


def test_the_scenario_takes_over_and_rejects_an_unknown_statistic() -> None:
    s = parse_scenario_text(SCENARIO.replace("OVER", "p90"))
    assert s.thresholds["drain_s"] == ThresholdSpec(max=30, over="p90")
    assert s.to_plain()["thresholds"] == {"drain_s": {"max": 30.0, "over": "p90"}}
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(SCENARIO.replace("OVER", "p99"), source="tiny.yaml")
    assert [str(p) for p in info.value.problems] == [
        "thresholds.drain_s.over = 'p99': must be 'min', 'median', 'mean', 'p90' or 'max' (line 9)"]
