"""Time series in 1 s bins (scenario seconds from the start of the load phase) for the figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from maildrill.harness.analysis.drain import outstanding_series
from maildrill.harness.analysis.join import Join
from maildrill.harness.analysis.model import Series

MAX_BINS = 200_000


def count(times: Iterable[float], bins: int) -> Series:
    values = [0.0] * bins
    for t in times:
        i = int(t) if t >= 0 else -1
        if 0 <= i < bins:
            values[i] += 1
        elif i >= bins:
            values[-1] += 1
    return Series(tuple(float(i) for i in range(bins)), tuple(values))


def last_value(samples: Sequence[tuple[float, float]], bins: int) -> Series:
    """Per bin the highest sample in it, or the last value before it."""
    ordered = sorted(samples)
    values, j, last = [], 0, 0.0
    for i in range(bins):
        hi = None
        while j < len(ordered) and ordered[j][0] < i + 1:
            hi = ordered[j][1] if hi is None else max(hi, ordered[j][1])
            last = ordered[j][1]
            j += 1
        values.append(hi if hi is not None else last)
    return Series(tuple(float(i) for i in range(bins)), tuple(values))


def run_series(j: Join, bins: int) -> dict[str, Series]:
    attempts = count(j.attempts.starts, bins)
    outcomes: dict[str, list[float]] = defaultdict(list)
    for end, outcome in zip(j.attempts.ends, j.attempts.outcomes(), strict=True):
        outcomes[outcome].append(end)
    replies_4xx = count(outcomes["4xx"], bins)
    out = {
        "attempts": attempts,
        "requests": count([r.t for r in j.requests], bins),
        "delivered": count([m.acceptances[0].t for m in j.messages.values() if m.acceptances], bins),
        "outstanding": outstanding_series(j.messages.values(), bins),
        "replies_2xx": count(outcomes["accepted"], bins),
        "replies_4xx": replies_4xx,
        "replies_5xx": count(outcomes["5xx"], bins),
        "deferred_ratio": Series(attempts.t_s, tuple(
            (d4 / n if n else 0.0) for d4, n in zip(replies_4xx.values, attempts.values, strict=True))),
    }
    if j.depth:
        out["queue_depth"] = last_value(j.depth, bins)
    return out
