"""Load shapes: exact arrival times, rates and counts as pure functions of t_s; the dispatcher's pacing and patience."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from maildrill.harness.load.plan import Dispatcher, LoadPlan, corr_of, pick_class, render, render_json, template_values
from maildrill.harness.load.shapes import arrivals, default_users, expected_count, rate_at
from maildrill.harness.scenario.models import (
    BurstShape,
    ClassSpec,
    ConstantShape,
    HTTPRequestSpec,
    LoadSpec,
    RampShape,
    SpikeShape,
    Step,
    StepShape,
)


def test_constant_arrivals_are_evenly_spaced_and_exactly_rate_times_duration() -> None:
    times = arrivals(ConstantShape(rps=5), 4)
    assert times == pytest.approx([k / 5 for k in range(20)])


def test_spike_rates_and_counts() -> None:
    shape = SpikeShape(base_rps=5, peak_rps=100, start_s=10, hold_s=20)
    assert [rate_at(shape, t, 60) for t in (0, 9.99, 10, 29.99, 30, 59.9, 60)] == [5, 5, 100, 100, 5, 5, 0]
    times = arrivals(shape, 60)
    assert len(times) == 5 * 10 + 100 * 20 + 5 * 30
    assert sum(1 for t in times if 10 <= t < 30) == 2000
    assert expected_count(shape, 10, 30, 60) == pytest.approx(2000)


def test_spike_with_ramps_is_linear_in_between() -> None:
    shape = SpikeShape(base_rps=0, peak_rps=100, start_s=0, ramp_s=10, hold_s=10)
    assert rate_at(shape, 5, 40) == pytest.approx(50)
    assert rate_at(shape, 25, 40) == pytest.approx(50)
    # area: ramp up 500 + hold 1000 + ramp down 500
    assert len(arrivals(shape, 40)) == 2000
    assert sum(1 for t in arrivals(shape, 40) if t < 10) == 500


def test_ramp_and_step() -> None:
    ramp = RampShape(from_rps=0, to_rps=20, start_s=2, ramp_s=4)
    assert [rate_at(ramp, t, 10) for t in (0, 2, 4, 6, 9)] == [0, 0, 10, 20, 20]
    assert len(arrivals(ramp, 10)) == 40 + 80
    step = StepShape(steps=[Step(at_s=1, rps=2), Step(at_s=3, rps=10)])
    assert [rate_at(step, t, 5) for t in (0.5, 1, 2.9, 3, 4.9)] == [0, 2, 2, 10, 10]
    assert arrivals(step, 5) == pytest.approx([1, 1.5, 2, 2.5] + [3 + k / 10 for k in range(20)])


def test_burst_is_count_requests_at_once_on_top_of_base() -> None:
    shape = BurstShape(count=50, at_s=2, base_rps=1)
    times = arrivals(shape, 5)
    assert times.count(2.0) == 51  # the burst plus the base request due at 2 s
    assert len(times) == 55
    assert expected_count(shape, 2, 2.5, 5) == pytest.approx(50.5)
    assert default_users(shape) == 51


@settings(max_examples=200, deadline=None)
@given(base=st.floats(0, 300), peak=st.floats(0, 300), start=st.floats(0, 30), hold=st.floats(0.1, 30),
       ramp=st.floats(0, 10), duration=st.floats(0.5, 60))
@example(base=4.0, peak=0.0, start=0.0, hold=1.0, ramp=2.2250738585072014e-308, duration=1.0)  # a denormal ramp
def test_arrivals_match_the_integral_of_the_rate(base: float, peak: float, start: float, hold: float, ramp: float,
                                                 duration: float) -> None:
    shape = SpikeShape(base_rps=base, peak_rps=peak, start_s=start, hold_s=hold, ramp_s=ramp)
    times = arrivals(shape, duration)
    total = expected_count(shape, 0, duration, duration)
    assert times == sorted(times)
    assert all(0 <= t < duration + 1e-9 for t in times)
    assert len(times) == math.ceil(total - 1e-9)
    # every prefix: the number due by t is within one request of the integral up to t
    for t in (duration / 3, duration / 2, duration * 0.9):
        due = sum(1 for x in times if x <= t)
        assert abs(due - expected_count(shape, 0, t, duration)) <= 1.0001


def _plan(classes: list[ClassSpec], shape: object, duration: float = 10, seed: int = 3) -> LoadPlan:
    load = LoadSpec(shape=shape, classes=classes)  # type: ignore[arg-type]
    return LoadPlan(load=load, duration_s=duration, seed=seed, sut_url="http://127.0.0.1:1", smtp_host=None,
                    smtp_port=None, go_file="/nonexistent/go.json", mta_events="/nonexistent/mta.jsonl")


REQ = HTTPRequestSpec(path="/otp", json={"email": "{recipient}"})


def test_workers_split_the_arrivals_without_overlap() -> None:
    plan = _plan([ClassSpec(name="otp", request=REQ)], ConstantShape(rps=10), duration=3)
    seen: list[tuple[float, str]] = []
    for i in range(3):
        d = Dispatcher(plan, index=i, count=3)
        while (job := d.take()) is not None:
            seen.append((job.due_s, job.corr))
    assert sorted(c for _, c in seen) == [corr_of(k) for k in range(30)]
    assert sorted(seen) == sorted((k / 10, corr_of(k)) for k in range(30))


def test_patience_resends_keep_the_corr_and_stop_when_delivered() -> None:
    patient = ClassSpec(name="otp", request=REQ, resend_after_s=2, max_resends=2)
    plan = _plan([patient], ConstantShape(rps=1), duration=5)
    d = Dispatcher(plan)
    jobs = []
    while (job := d.take()) is not None:
        jobs.append((job.due_s, job.corr, job.resend))
        if job.due_s >= 1:
            d.mark_delivered("u000001")  # the user of need 1 got the code after its first request
    assert jobs == [(0, "u000000", 0), (1, "u000001", 0), (2, "u000002", 0), (2, "u000000", 1), (3, "u000003", 0),
                    (4, "u000004", 0), (4, "u000002", 1), (4, "u000000", 2)]
    assert d.skipped_resends == 1


def test_class_mix_follows_weights_and_is_deterministic() -> None:
    classes = [ClassSpec(name="otp", weight=3, request=REQ), ClassSpec(name="news", weight=1, request=REQ)]
    picks = [pick_class(classes, 7, k).name for k in range(4000)]
    assert picks == [pick_class(classes, 7, k).name for k in range(4000)]
    assert 0.72 < picks.count("otp") / 4000 < 0.78


def test_templates_render_every_field() -> None:
    plan = _plan([ClassSpec(name="otp", request=REQ)], ConstantShape(rps=1))
    job = Dispatcher(plan).take()
    assert job is not None
    values = template_values(plan, job)
    assert values == {"corr": "u000000", "class": "otp", "resend": "0", "user": "u000000",
                      "recipient": "u000000@users.drill.test"}
    assert render_json({"email": "{recipient}", "n": [1, "{class}-{resend}"], "raw": "{{x}}"}, values) == {
        "email": "u000000@users.drill.test", "n": [1, "otp-0"], "raw": "{x}"}
    assert render("/u/{corr}", values) == "/u/u000000"
