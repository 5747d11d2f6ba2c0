"""Time series in 1 s bins (scenario seconds from the start of the load phase) for the figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from maildrill.harness.analysis.columns import Columns, Floats
from maildrill.harness.analysis.drain import outstanding_series
from maildrill.harness.analysis.join import Join
from maildrill.harness.analysis.model import Series

MAX_BINS = 200_000


def count(times: Sequence[float] | Floats, bins: int) -> Series:
    """How many of `times` fall in each 1 s bin (later ones in the last bin; negative ones in none)."""
    t = np.asarray(times, dtype=np.float64)
    t = t[t >= 0]
    bin_of = np.minimum(np.trunc(t), bins - 1).astype(np.int64)
    values: list[float] = np.bincount(bin_of, minlength=bins).astype(np.float64).tolist()
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


def run_series(j: Join, c: Columns, bins: int) -> dict[str, Series]:
    attempts = count(j.attempts.starts, bins)
    outcomes: dict[str, list[float]] = defaultdict(list)
    for end, outcome in zip(j.attempts.ends, j.attempts.outcomes(), strict=True):
        outcomes[outcome].append(end)
    replies_4xx = count(outcomes["4xx"], bins)
    out = {
        "attempts": attempts,
        "requests": count(c.req_t, bins),
        "delivered": count(c.first_acc[c.delivered], bins),
        "outstanding": outstanding_series(c, bins),
        "replies_2xx": count(outcomes["accepted"], bins),
        "replies_4xx": replies_4xx,
        "replies_5xx": count(outcomes["5xx"], bins),
        "deferred_ratio": Series(attempts.t_s, tuple(
            (d4 / n if n else 0.0) for d4, n in zip(replies_4xx.values, attempts.values, strict=True))),
    }
    if j.depth:
        out["queue_depth"] = last_value(j.depth, bins)
    return out
