"""Retry storms: how many attempts per message, how far apart, how synchronised, and whether a permanent (5xx)
reply was retried."""

from __future__ import annotations

import itertools
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from maildrill.harness.analysis.columns import Columns, Flags
from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.model import Value
from maildrill.harness.analysis.stats import cv, percentile, sync_index


def interval_sequences(msgs: Iterable[Message]) -> list[list[float]]:
    """Per message, the times between its consecutive delivery attempts."""
    return [[b - a for a, b in itertools.pairwise(m.attempt_starts)] for m in msgs if m.attempt_count > 1]


def intervals(c: Columns) -> list[float]:
    """Every message's retry intervals, message by message."""
    return [v for seq in story(c).sequences for v in seq]


def retried_after_5xx(m: Message) -> bool:
    """Another delivery attempt for the message began after its first permanent (5xx) reply."""
    if m.first_5xx is None:
        return False
    t5, key = m.first_5xx.t, m.first_5xx.attempt
    return any(a.start >= t5 and a.key != key for a in m.attempts)


@dataclass(frozen=True, slots=True)
class Retries:
    attempts_total: int
    messages: int
    intervals: tuple[float, ...]  # sorted
    sequences: tuple[tuple[float, ...], ...]
    permanent_failures_retried: int

    def metrics(self) -> dict[str, Value]:
        iv = self.intervals
        return {
            "attempts_total": self.attempts_total,
            "retry_amplification": self.attempts_total / self.messages if self.messages else None,
            "retry_interval_p50_s": percentile(iv, 50),
            "retry_interval_p95_s": percentile(iv, 95),
            "retry_interval_cv": cv(iv),
            "retry_sync_index": sync_index(self.sequences),
            "permanent_failures_retried": self.permanent_failures_retried,
        }


@dataclass(frozen=True)
class Story:
    """The retry story of every message, read once for the run and all its classes: the interval sequences of
    the messages attempted more than once (`retried`: their indices), and which messages were attempted again
    after a 5xx, with the MTAs that gave those 5xx."""

    retried: npt.NDArray[np.intp]
    sequences: list[list[float]]
    after_5xx: Flags
    after_5xx_by_mta: Counter[str]


_stories: weakref.WeakKeyDictionary[Columns, Story] = weakref.WeakKeyDictionary()


def story(c: Columns) -> Story:
    s = _stories.get(c)
    if s is None:
        retried = np.flatnonzero(c.retried)
        every = c.messages
        sequences = interval_sequences(every[i] for i in retried.tolist())
        after = np.zeros(len(every), dtype=np.bool_)
        by_mta: Counter[str] = Counter()
        for i in np.flatnonzero(c.bounced).tolist():
            m = every[i]
            if m.first_5xx is not None and retried_after_5xx(m):
                after[i] = True
                by_mta[m.first_5xx.mta] += 1
        s = _stories[c] = Story(retried, sequences, after, by_mta)
    return s


def retries(c: Columns, mask: Flags | None, attempts: int) -> Retries:
    """Of the messages where `mask` holds (None: every one); `attempts`: how many delivery attempts they had."""
    s = story(c)
    sequences = s.sequences if mask is None else [s.sequences[k] for k in np.flatnonzero(mask[s.retried]).tolist()]
    n = len(c.messages) if mask is None else int(np.count_nonzero(mask))
    again = s.after_5xx if mask is None else s.after_5xx & mask
    return Retries(attempts, n, tuple(sorted(v for seq in sequences for v in seq)),
                   tuple(tuple(x) for x in sequences), int(np.count_nonzero(again)))
