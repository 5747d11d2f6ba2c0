"""Clocks: seconds since a run's origin, shared by every process of a drill.

`time.monotonic()` is system-wide on Linux (CLOCK_MONOTONIC), so a parent passes its origin to
subprocesses (``MAILDRILL_T0``) and every event across processes lands on one time axis.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the run's origin."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic()` minus an origin (defaults to "now")."""

    __slots__ = ("origin",)

    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else float(origin)

    def now(self) -> float:
        return time.monotonic() - self.origin


class FakeClock:
    """A clock that only moves when told to; for unit and property tests."""

    __slots__ = ("t",)

    def __init__(self, t: float = 0.0) -> None:
        self.t = float(t)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.t += seconds
