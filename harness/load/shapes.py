"""Load shapes as pure functions of t_s: the rate, and the exact arrival time of every request.

A shape is piecewise linear in requests/second (plus instantaneous bursts). Request ``k`` (0-based) is
due when the integral of the rate reaches ``k``: a constant 5 req/s for 4 s is 20 requests at 0, 0.2,
... 3.8 s. The locustfile paces its users by these times, so the achieved rate follows the shape
rather than depending on response times (open-model arrivals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from maildrill.harness.scenario.models import BurstShape, ConstantShape, RampShape, ShapeSpec, SpikeShape, StepShape

_EPS = 1e-9
_MIN_SEGMENT_S = 1e-6  # shorter pieces carry < 1e-6 s of traffic; dropping them keeps slopes finite

@dataclass(frozen=True, slots=True)
class Segment:
    """The rate goes linearly from `r0` at `t0` to `r1` at `t1` (req/s, seconds from load start)."""

    t0: float
    t1: float
    r0: float
    r1: float

    def rate(self, t: float) -> float:
        if self.t1 <= self.t0:
            return self.r0
        return self.r0 + (self.r1 - self.r0) * (t - self.t0) / (self.t1 - self.t0)

    def integral(self, t: float) -> float:
        """Requests due in [t0, t] (t clipped to the segment)."""
        tau = min(max(t, self.t0), self.t1) - self.t0
        return self.r0 * tau + 0.5 * self._slope() * tau * tau

    def _slope(self) -> float:
        return 0.0 if self.t1 <= self.t0 else (self.r1 - self.r0) / (self.t1 - self.t0)

    def time_of(self, m: float) -> float:
        """The time at which the integral from t0 reaches m (0 <= m <= the segment's total)."""
        a, r0 = self._slope(), self.r0
        if m <= 0:
            return self.t0
        # r0 τ + a τ²/2 = m, solved in the form that stays exact when a → 0
        disc = max(r0 * r0 + 2 * a * m, 0.0)
        denom = r0 + math.sqrt(disc)
        return self.t0 + (2 * m / denom if denom > 0 else 0.0)


def _const(t0: float, t1: float, r: float) -> Segment:
    return Segment(t0, t1, r, r)


def segments(shape: ShapeSpec, duration_s: float) -> list[Segment]:
    """The shape over [0, duration_s) as consecutive linear pieces (empty pieces dropped)."""
    d = duration_s
    raw: list[Segment]
    if isinstance(shape, ConstantShape):
        raw = [_const(0, d, shape.rps)]
    elif isinstance(shape, RampShape):
        s, e = shape.start_s, shape.start_s + shape.ramp_s
        raw = [_const(0, s, shape.from_rps), Segment(s, e, shape.from_rps, shape.to_rps),
               _const(e, max(d, e), shape.to_rps)]
    elif isinstance(shape, StepShape):
        times = [st.at_s for st in shape.steps] + [max(d, shape.steps[-1].at_s)]
        raw = [_const(0, times[0], 0.0)] + [_const(times[i], times[i + 1], st.rps) for i, st in enumerate(shape.steps)]
    elif isinstance(shape, SpikeShape):
        a = shape.start_s
        b = a + shape.ramp_s
        c = b + shape.hold_s
        e = c + shape.ramp_s
        raw = [_const(0, a, shape.base_rps), Segment(a, b, shape.base_rps, shape.peak_rps),
               _const(b, c, shape.peak_rps), Segment(c, e, shape.peak_rps, shape.base_rps),
               _const(e, max(d, e), shape.base_rps)]
    elif isinstance(shape, BurstShape):
        raw = [_const(0, d, shape.base_rps)]
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not a shape: {shape!r}")
    out = []
    for seg in raw:
        t0, t1 = min(seg.t0, d), min(seg.t1, d)
        if t1 - t0 >= _MIN_SEGMENT_S:
            out.append(Segment(t0, t1, seg.rate(t0), seg.rate(t1)))
    return out


def bursts(shape: ShapeSpec, duration_s: float) -> list[tuple[float, int]]:
    """Instantaneous request bursts as (t_s, count)."""
    if isinstance(shape, BurstShape) and shape.at_s < duration_s:
        return [(shape.at_s, shape.count)]
    return []


def rate_at(shape: ShapeSpec, t_s: float, duration_s: float = math.inf) -> float:
    """Requests per second the shape asks for at `t_s` (bursts excluded; 0 outside [0, duration_s))."""
    if t_s < 0 or t_s >= duration_s:
        return 0.0
    horizon = duration_s if math.isfinite(duration_s) else t_s + 1.0
    for seg in segments(shape, horizon):
        if seg.t0 <= t_s < seg.t1:
            return seg.rate(t_s)
    return 0.0


def expected_count(shape: ShapeSpec, t0: float, t1: float, duration_s: float) -> float:
    """Requests the shape asks for in [t0, t1) (bursts included)."""
    total = sum(seg.integral(t1) - seg.integral(t0) for seg in segments(shape, duration_s))
    return total + sum(n for t, n in bursts(shape, duration_s) if t0 <= t < t1)


def arrivals(shape: ShapeSpec, duration_s: float, *, limit: int = 5_000_000) -> list[float]:
    """The due time of every request in [0, duration_s), sorted. Raises ValueError beyond `limit` requests."""
    out: list[float] = []
    done = 0.0  # integral before the current segment
    k = 0
    for seg in segments(shape, duration_s):
        total = seg.integral(seg.t1)
        while k < done + total - _EPS:
            out.append(seg.time_of(k - done))
            k += 1
            if k > limit:
                raise ValueError(f"the load shape asks for more than {limit} requests; lower the rates or duration")
        done += total
    for t, n in bursts(shape, duration_s):
        out.extend([t] * n)
    out.sort()
    return out


def peak_rps(shape: ShapeSpec) -> float:
    if isinstance(shape, ConstantShape):
        return shape.rps
    if isinstance(shape, RampShape):
        return max(shape.from_rps, shape.to_rps)
    if isinstance(shape, StepShape):
        return max(s.rps for s in shape.steps)
    if isinstance(shape, SpikeShape):
        return max(shape.base_rps, shape.peak_rps)
    return shape.base_rps


def default_users(shape: ShapeSpec) -> int:
    """Concurrent request slots when the scenario gives none: half a second of peak traffic (every burst
    request at once), at least 4, at most 1000."""
    want = math.ceil(peak_rps(shape) * 0.5) + (shape.count if isinstance(shape, BurstShape) else 0)
    return max(4, min(1000, want))
