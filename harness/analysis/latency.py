"""Delivery latency and OTP expiry: from a message's first request to its first acceptance."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from maildrill.harness.analysis.columns import Columns, Flags, Floats, ttl_limits
from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.model import Value
from maildrill.harness.analysis.stats import percentile


def latency(m: Message) -> float:
    """Seconds from the first request to the first acceptance (of a delivered message)."""
    return max(0.0, m.acceptances[0].t - m.first_req)


def expired(m: Message, ttl: Mapping[str, float], lat: float | None = None) -> bool:
    """Delivered after its class's ttl_s, or never (False for a class without one). `lat`: its `latency`, when
    the caller has it already."""
    limit = ttl.get(m.cls or "")
    return limit is not None and (not m.acceptances or (latency(m) if lat is None else lat) > limit)


def _float(x: float | None) -> float | None:
    return None if x is None else float(x)


def _finite(x: float | None) -> float | None:
    """inf (the percentile falls on a message never delivered) is reported as null: "never"."""
    return None if x is None or math.isinf(x) else x


@dataclass(frozen=True, slots=True)
class Latency:
    owed: Floats  # sorted latency of every message owed a delivery (inf: never delivered)
    messages: int
    otp_expired: int | None  # None: no ttl for these messages

    def metrics(self) -> dict[str, Value]:
        lat, n, exp = self.owed, self.messages, self.otp_expired
        return {
            "latency_p50_s": _finite(_float(percentile(lat, 50))),
            "latency_p95_s": _finite(_float(percentile(lat, 95))),
            "latency_p99_s": _finite(_float(percentile(lat, 99))),
            "latency_max_s": _finite(float(lat[-1])) if len(lat) else None,
            "otp_expired": exp,
            "otp_expired_ratio": (exp / n if n else None) if exp is not None else None,
        }


def expired_flags(c: Columns, ttl: Mapping[str, float]) -> Flags:
    """Per message, `expired`."""
    limits = ttl_limits(c, ttl)
    late: Flags = ~np.isnan(limits) & (~c.delivered | (c.latency > np.nan_to_num(limits, nan=math.inf)))
    return late


def measure(c: Columns, mask: Flags | None, ttl: Mapping[str, float], *, has_ttl: bool) -> Latency:
    """Of the messages where `mask` holds (None: every one)."""
    # Delivery latency is over every message the SUT owed a delivery: one never accepted (and not bounced
    # with a 5xx) is infinitely late. A p99 over the few that got through would hide the tail it exists to show.
    owed = c.delivered | ~c.bounced
    if mask is not None:
        owed &= mask
    n = len(c.messages) if mask is None else int(np.count_nonzero(mask))
    exp = None
    if has_ttl:
        late = expired_flags(c, ttl)
        exp = int(np.count_nonzero(late if mask is None else late & mask))
    return Latency(np.sort(c.latency[owed]), n, exp)
