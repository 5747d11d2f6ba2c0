"""The run clock: one monotonic origin for the harness and every subprocess it starts.

The classes live in `fake_mta.clock` (the fake MTA runs standalone and never imports `harness`);
this module adds the hand-over of the origin to subprocesses through ``MAILDRILL_T0``.
"""

from __future__ import annotations

import os

from fake_mta.clock import Clock, FakeClock, MonotonicClock

ORIGIN_ENV = "MAILDRILL_T0"

__all__ = ["ORIGIN_ENV", "Clock", "FakeClock", "MonotonicClock", "clock_from_env", "origin_env"]


def clock_from_env(environ: dict[str, str] | None = None) -> MonotonicClock:
    """The run's clock in a subprocess (origin from ``MAILDRILL_T0``), or a fresh one."""
    env = os.environ if environ is None else environ
    raw = env.get(ORIGIN_ENV)
    return MonotonicClock(float(raw)) if raw else MonotonicClock()


def origin_env(clock: MonotonicClock) -> dict[str, str]:
    """Environment entries that give a subprocess this clock."""
    return {ORIGIN_ENV: repr(clock.origin)}
