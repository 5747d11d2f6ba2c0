"""Queue drain: what the SUT still owed over time. outstanding(t) = messages the SUT had taken on by t and not
resolved (delivered, or bounced with a 5xx) by t — bounced messages count as resolved so that a drill with hard
bounces can still drain."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from maildrill.harness.analysis.columns import Columns, Flags, Floats
from maildrill.harness.analysis.model import Series, Value


@dataclass(frozen=True, slots=True)
class Drain:
    outstanding_peak: int
    drain_s: float | None  # seconds after the reference until nothing was outstanding; None: never

    def metrics(self, requested: int) -> dict[str, Value]:
        return {"outstanding_peak": self.outstanding_peak, "drain_s": self.drain_s if requested else None}


def steps(c: Columns, mask: Flags | None = None) -> tuple[Floats, Floats]:
    """When the SUT took each message on (+1) and when each was resolved (-1), each sorted (`mask`: of these
    messages only)."""
    owed = c.owed < math.inf if mask is None else mask & (c.owed < math.inf)
    return np.sort(c.owed[owed]), np.sort(c.resolved[owed & (c.resolved < math.inf)])


def drain(starts: Floats, ends: Floats, ref: float) -> Drain:
    """The outstanding peak, and how long after `ref` (the end of the load or of the last fault) it took to
    reach 0: the level walked over the steps in time order, at equal times the +1s first (`starts`, `ends`:
    sorted, from `steps`)."""
    n, m = len(starts), len(ends)
    if not n:
        return Drain(0, None)
    # the level after each step: after the i-th take-on, i + 1 minus the resolutions strictly before it; after
    # the k-th resolution, the take-ons at or before it minus k + 1
    after_start = np.arange(1, n + 1) - np.searchsorted(ends, starts, side="left")
    after_end = np.searchsorted(starts, ends, side="right") - np.arange(1, m + 1)
    peak = max(0, int(after_start.max()), int(after_end.max()) if m else 0)
    if starts[-1] <= ref and (not m or ends[-1] <= ref):  # every step happened by ref
        return Drain(peak, 0.0 if n == m else None)
    at_ref = int(np.searchsorted(starts, ref, side="right")) - int(np.searchsorted(ends, ref, side="right"))
    if at_ref == 0:
        return Drain(peak, 0.0)
    # the first step after ref that leaves nothing outstanding
    zero = [float(x[(level == 0) & (x > ref)][0]) for x, level in ((starts, after_start), (ends, after_end))
            if np.any((level == 0) & (x > ref))]
    return Drain(peak, min(zero) - ref if zero else None)


def outstanding_series(c: Columns, bins: int) -> Series:
    """Value i: messages the SUT had taken on before the end of second i and not resolved by then."""
    owed = c.owed < math.inf
    start = np.maximum(np.trunc(c.owed[owed]), 0.0)
    resolved = c.resolved[owed]
    end = np.where(resolved < math.inf, np.maximum(np.trunc(np.where(resolved < math.inf, resolved, 0.0)), 0.0),
                   float(bins))
    delta = (np.bincount(start[start < bins].astype(np.int64), minlength=bins)[:bins]
             - np.bincount(end[end < bins].astype(np.int64), minlength=bins)[:bins])
    values: list[float] = np.cumsum(delta).astype(np.float64).tolist()
    return Series(tuple(float(i) for i in range(bins)), tuple(values))
