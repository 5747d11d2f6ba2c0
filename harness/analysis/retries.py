"""Retry storms: how many attempts per message, how far apart, how synchronised, and whether a permanent (5xx)
reply was retried."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from maildrill.harness.analysis.columns import Columns, Flags
from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.model import Value
from maildrill.harness.analysis.stats import cv, percentile, sync_index


def interval_sequences(msgs: Iterable[Message]) -> list[list[float]]:
    """Per message, the times between its consecutive delivery attempts."""
    return [[b - a for a, b in itertools.pairwise(m.attempt_starts)] for m in msgs if m.attempt_count > 1]


def intervals(msgs: Iterable[Message]) -> list[float]:
    return [v for seq in interval_sequences(msgs) for v in seq]


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


def retries(c: Columns, mask: Flags | None, attempts: int) -> Retries:
    """Of the messages where `mask` holds (None: every one); `attempts`: how many delivery attempts they had."""
    sequences = interval_sequences(c.pick(mask, c.retried))
    n = len(c.messages) if mask is None else int(np.count_nonzero(mask))
    return Retries(attempts, n, tuple(sorted(v for seq in sequences for v in seq)),
                   tuple(tuple(s) for s in sequences), sum(1 for m in c.pick(mask, c.bounced) if retried_after_5xx(m)))
