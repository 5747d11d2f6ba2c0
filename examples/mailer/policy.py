"""Retry, jitter, pool back-off and rate-limit policies: small pure objects driven by an injected clock."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from maildrill.examples.mailer.config import Jitter, RateSpec, RetryKind, RetrySpec


class Outcome(StrEnum):
    """What one delivery attempt came to."""

    SENT = "sent"
    TEMPFAIL = "tempfail"  # 4xx reply: retry later
    PERMFAIL = "permfail"  # 5xx reply: the receiver refused for good
    REFUSED = "refused"  # TCP connection refused (a dark vendor)
    CONN_ERROR = "conn_error"  # dropped/timed out before the message was complete: certainly not delivered
    UNKNOWN = "unknown"  # dropped/timed out after the final dot: maybe delivered (the lost ack)
    TIMEOUT = "timeout"  # an API request got no answer within the SDK's timeout (treated as not delivered)


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    code: int = 0
    text: str = ""
    stage: str = ""


def retry_delay_s(spec: RetrySpec, jitter: Jitter, attempts: int, rng: random.Random) -> float | None:
    """Seconds (unscaled) before the next attempt after `attempts` failed ones; None = don't retry."""
    if spec.kind is RetryKind.NONE:
        return None
    delay = spec.base_s if spec.kind is RetryKind.FIXED else min(spec.cap_s, spec.base_s * 2 ** max(0, attempts - 1))
    if jitter is Jitter.FULL:
        return rng.uniform(0.0, delay)
    if jitter is Jitter.EQUAL:
        return delay / 2 + rng.uniform(0.0, delay / 2)
    return delay


class PoolBackoff:
    """Per-vendor pause after a 421: every worker holds its sends to that vendor until it ends.

    The pause grows with consecutive 421s (the retry policy's curve) and resets on a success, so a
    throttling receiver sees the whole pool go quiet instead of N workers hammering it."""

    def __init__(
        self, spec: RetrySpec, jitter: Jitter, *, scale: float, rng: random.Random, now: Callable[[], float] = time.time
    ) -> None:
        self._spec, self._jitter, self._scale, self._rng, self._now = spec, jitter, scale, rng, now
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._level: dict[str, int] = {}

    def throttled(self, vendor: str) -> float:
        """Record a 421 from `vendor`; returns the time (wall seconds) its pause ends."""
        with self._lock:
            level = self._level.get(vendor, 0) + 1
            self._level[vendor] = level
            delay = retry_delay_s(self._spec, self._jitter, level, self._rng)
            # With retry 'none' the pool still needs a pause; one second (scaled) is the smallest sane one.
            until = self._now() + (1.0 if delay is None else max(delay, 0.05)) * self._scale
            self._until[vendor] = max(self._until.get(vendor, 0.0), until)
            return self._until[vendor]

    def pause(self, vendor: str, until: float) -> None:
        """Hold every worker's sends to `vendor` until `until` (wall seconds): the vendor's own reset time."""
        with self._lock:
            self._until[vendor] = max(self._until.get(vendor, 0.0), until)

    def succeeded(self, vendor: str) -> None:
        with self._lock:
            self._level.pop(vendor, None)

    def paused_until(self, vendor: str) -> float:
        with self._lock:
            until = self._until.get(vendor, 0.0)
            return until if until > self._now() else 0.0


class TokenBucket:
    """`rate.tokens` per `rate.period_s * scale` seconds, burst of one second's worth (at least 1)."""

    def __init__(self, rate: RateSpec, *, scale: float, now: Callable[[], float] = time.monotonic) -> None:
        self.per_s = rate.tokens / (rate.period_s * scale)
        self.burst = max(1.0, self.per_s)
        self._tokens = self.burst
        self._now = now
        self._stamp = now()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token if one is there: returns 0.0, else the seconds until one will be."""
        with self._lock:
            now = self._now()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_s)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.per_s
