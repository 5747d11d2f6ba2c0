"""The run clock: one monotonic origin for the harness and every subprocess it starts.

The classes live in `maildrill.fake_mta.clock` (the fake MTA runs standalone and never imports `harness`);
this module adds the hand-over of the origin to subprocesses through ``MAILDRILL_T0``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from maildrill.fake_mta.clock import Clock, FakeClock, MonotonicClock

from maildrill.polling import poll_until

ORIGIN_ENV = "MAILDRILL_T0"

__all__ = ["ORIGIN_ENV", "Clock", "FakeClock", "MonotonicClock", "clock_from_env", "origin_env", "wait_until"]


def clock_from_env(environ: dict[str, str] | None = None) -> MonotonicClock:
    """The run's clock in a subprocess (origin from ``MAILDRILL_T0``), or a fresh one."""
    env = os.environ if environ is None else environ
    raw = env.get(ORIGIN_ENV)
    return MonotonicClock(float(raw)) if raw else MonotonicClock()


def origin_env(clock: MonotonicClock) -> dict[str, str]:
    """Environment entries that give a subprocess this clock."""
    return {ORIGIN_ENV: repr(clock.origin)}


def wait_until(condition: Callable[[], object], timeout_s: float, *, what: str = "condition",
               interval_s: float = 0.02) -> object:
    """Poll `condition` until it returns something truthy (returned) or `timeout_s` passes (WaitTimeout)."""
    from maildrill.harness.errors import WaitTimeout

    return poll_until(condition, timeout_s, interval_s=interval_s,
                      error=lambda: WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what}"))
