"""One way to wait for a condition with a deadline, in threads and in asyncio alike: call `condition` until it
returns something truthy (which is returned), sleeping `interval_s` between calls; once `timeout_s` has passed
without it, raise what `error()` builds (default: TimeoutError naming `what`). An exception from `condition`
(say, the process it waits for died) propagates at once.

Never a bare sleep: the sleep here is the interval between checks of a deadline-bounded wait. Imports nothing
from maildrill, so every layer (the fake MTA included) and the tests use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timeout(what: str, timeout_s: float) -> Callable[[], BaseException]:
    return lambda: TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


def poll_until(condition: Callable[[], T | None], timeout_s: float, *, what: str = "condition",
               interval_s: float = 0.02, error: Callable[[], BaseException] | None = None) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise (error or _timeout(what, timeout_s))()
        time.sleep(interval_s)


async def poll_until_async(condition: Callable[[], T | Awaitable[T | None] | None], timeout_s: float, *,
                           what: str = "condition", interval_s: float = 0.02,
                           error: Callable[[], BaseException] | None = None) -> T:
    """As `poll_until`; `condition` may be a plain function or a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = condition()
        if isinstance(got, Awaitable):
            got = await got
        if got:
            return got
        if time.monotonic() >= deadline:
            raise (error or _timeout(what, timeout_s))()
        await asyncio.sleep(interval_s)
