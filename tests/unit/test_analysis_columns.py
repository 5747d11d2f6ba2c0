"""The measures done as array arithmetic (`analysis.columns`, `drain`, `series`) give exactly what their step-by-step
definitions give, on any steps: ties, negative levels (a message resolved before the SUT acknowledged it), steps
before the reference, none after it."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from maildrill.harness.analysis import drain, series

times = st.lists(st.sampled_from([-1.5, -0.5, 0.0, 0.25, 1.0, 1.0, 2.0, 2.5, 3.0, 7.75, 40.0]) | st.floats(-5, 50),
                 max_size=40)


def walk(starts: list[float], ends: list[float], ref: float) -> tuple[int, float | None]:
    """The definition: walk the steps in time order, at equal times the take-ons (+1) first."""
    steps = sorted([(t, 0, 1) for t in starts] + [(t, 1, -1) for t in ends])
    if not steps:
        return 0, None
    level = peak = 0
    at_ref: int | None = None
    drained: float | None = None
    for t, _, step in steps:
        if at_ref is None and t > ref:
            at_ref = level
            if level == 0:
                drained = 0.0
        level += step
        peak = max(peak, level)
        if at_ref is not None and drained is None and level == 0:
            drained = t - ref
    if at_ref is None:
        drained = 0.0 if level == 0 else None
    return peak, drained


@settings(max_examples=400, deadline=None)
@given(times, times, st.sampled_from([-1.0, 0.0, 1.0, 2.0, 2.5, 10.0, 100.0]))
def test_drain_is_the_walk_over_its_steps(starts: list[float], ends: list[float], ref: float) -> None:
    if not starts:
        assert drain.drain(np.array([]), np.sort(np.array(ends, dtype=np.float64)), ref) == drain.Drain(0, None)
        return
    got = drain.drain(np.sort(np.array(starts)), np.sort(np.array(ends, dtype=np.float64)), ref)
    assert (got.outstanding_peak, got.drain_s) == walk(starts, ends, ref)
    assert type(got.outstanding_peak) is int and (got.drain_s is None or type(got.drain_s) is float)


@settings(max_examples=200, deadline=None)
@given(times, st.integers(1, 12))
def test_count_is_the_per_second_tally(ts: list[float], bins: int) -> None:
    want = [0.0] * bins
    for t in ts:
        i = int(t) if t >= 0 else -1
        if 0 <= i < bins:
            want[i] += 1
        elif i >= bins:
            want[-1] += 1
    got = series.count(ts, bins)
    assert got.values == tuple(want) and got.t_s == tuple(float(i) for i in range(bins))
    assert all(type(v) is float for v in got.values)


def test_a_time_beyond_every_bin_lands_in_the_last_one() -> None:
    assert series.count([0.5, 1e300, math.inf], 3).values == (1.0, 0.0, 2.0)
