"""Small exact statistics used by the metrics: nearest-rank percentiles, CV, and the retry synchronisation index."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

# A retry interval counts as "in step" with the most common one when it lies within this factor of it.
SYNC_BAND = 1.10
SYNC_MIN_RETRIES = 5


class Sorted(Protocol):
    """Sorted values that can be indexed: a sequence, or a numpy array."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...


def percentile(sorted_values: Sorted, p: float) -> Any:
    """Nearest-rank percentile of already sorted values: the smallest value with at least p % of the values at
    or below it (p50 of [1, 2, 3, 4] is 2; p99 of 100 values is the 99th), as the values hold it (a numpy array
    gives a numpy float). None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))
    return sorted_values[min(n, rank) - 1]


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (population stdev / mean); None for fewer than 2 values or a zero mean."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    if mean <= 0:
        return None
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return math.sqrt(var) / mean


def sync_index(sequences: Sequence[Sequence[float]]) -> float | None:
    """How synchronised retries are, 0..1: for each retry ordinal k (every message's 1st retry, 2nd retry, ...)
    the share of k-th retry intervals within ±10 % (a factor of 1.1 either way) of the most common k-th
    interval (the densest such band), averaged over all retries.

    Messages deferred together by the same throttle come back together when their k-th retry waits the same
    time: fixed intervals (~1) and exponential backoff *without* jitter (~1: it only stretches the lock-step)
    both keep them in step; full jitter spreads each k-th retry uniformly (at most ~0.2 by construction).
    Scale-free (unchanged when every interval is multiplied by a constant, i.e. by `time_scale`) and
    independent of the number of messages. None with fewer than 5 retries."""
    by_ordinal: dict[int, list[float]] = {}
    for seq in sequences:
        for k, v in enumerate(seq):
            by_ordinal.setdefault(k, []).append(v)
    total = sum(len(v) for v in by_ordinal.values())
    if total < SYNC_MIN_RETRIES:
        return None
    return sum(_densest_band(v) for v in by_ordinal.values()) / total


def _densest_band(values: list[float]) -> int:
    logs = sorted(math.log(max(v, 1e-3)) for v in values)
    width = 2 * math.log(SYNC_BAND)
    best = lo = 0
    for hi, x in enumerate(logs):
        while x - logs[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
