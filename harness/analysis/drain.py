"""Queue drain: what the SUT still owed over time. outstanding(t) = messages the SUT had taken on by t and not
resolved (delivered, or bounced with a 5xx) by t — bounced messages count as resolved so that a drill with hard
bounces can still drain."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.model import Series, Value


def owed_from(m: Message) -> float:
    """When the SUT took the message on: its first acknowledged request; a message whose requests all failed
    but that was delivered anyway (queued before a crash cut the reply) from its first request; inf (never)
    for one the SUT refused and never sent — the user saw the error (http_error_ratio, undelivered), but it
    was never in the SUT's queue, so it is not outstanding and does not keep a drain from ending."""
    if m.first_ok < math.inf:
        return m.first_ok
    return m.first_req if m.acceptances else math.inf


def resolved_at(m: Message) -> float:
    t = m.acceptances[0].t if m.acceptances else math.inf
    if m.first_5xx is not None:
        t = min(t, m.first_5xx.t)
    return max(t, m.first_req)


@dataclass(frozen=True, slots=True)
class Drain:
    outstanding_peak: int
    drain_s: float | None  # seconds after the reference until nothing was outstanding; None: never

    def metrics(self, requested: int) -> dict[str, Value]:
        return {"outstanding_peak": self.outstanding_peak, "drain_s": self.drain_s if requested else None}


def _steps(msgs: Iterable[Message]) -> tuple[list[float], list[float]]:
    """When the SUT took each message on (+1) and when each was resolved (-1), each list sorted: two lists of the
    messages' own floats, not a (time, step) tuple per step (at 10 M events those tuples were ~110 MB)."""
    starts: list[float] = []
    ends: list[float] = []
    for m in msgs:
        start = owed_from(m)
        if start == math.inf:
            continue
        starts.append(start)
        r = resolved_at(m)
        if r < math.inf:
            ends.append(r)
    starts.sort()
    ends.sort()
    return starts, ends


def drain(msgs: Iterable[Message], ref: float) -> Drain:
    """The outstanding peak, and how long after `ref` (the end of the load or of the last fault) it took to
    reach 0. The steps are walked in time order, at equal times the +1s first."""
    starts, ends = _steps(msgs)
    if not starts:
        return Drain(0, None)
    level = peak = 0
    at_ref: int | None = None
    drained: float | None = None
    i = k = 0
    n_starts, n_ends = len(starts), len(ends)
    while i < n_starts or k < n_ends:
        if k >= n_ends or (i < n_starts and starts[i] <= ends[k]):  # at equal times the take-on first
            t, step = starts[i], 1
            i += 1
        else:
            t, step = ends[k], -1
            k += 1
        if at_ref is None and t > ref:
            at_ref = level
            if level == 0:
                drained = 0.0
        level += step
        peak = max(peak, level)
        if at_ref is not None and drained is None and level == 0:
            drained = t - ref
    if at_ref is None:  # every step happened by ref
        drained = 0.0 if level == 0 else None
    return Drain(peak, drained)


def outstanding_series(msgs: Iterable[Message], bins: int) -> Series:
    """Value i: messages the SUT had taken on before the end of second i and not resolved by then."""
    delta = [0] * bins
    for m in msgs:
        start = owed_from(m)
        if start == math.inf:
            continue
        i = max(0, int(start))
        if i < bins:
            delta[i] += 1
        r = resolved_at(m)
        j = max(0, int(r)) if r < math.inf else bins
        if j < bins:
            delta[j] -= 1
    values, level = [], 0
    for d in delta:
        level += d
        values.append(float(level))
    return Series(tuple(float(i) for i in range(bins)), tuple(values))
