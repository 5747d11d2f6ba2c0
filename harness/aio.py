"""The event loop maildrill's own servers run on: uvloop when it is installed (a regular dependency on Linux and
macOS; about 2x the fake MTA's throughput), asyncio's otherwise. `MAILDRILL_EVENT_LOOP=asyncio` forces asyncio's
(to compare, or to rule uvloop out when chasing a bug)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _uvloop() -> Any | None:
    if os.environ.get("MAILDRILL_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when available."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop (for a server in a thread): uvloop's when available."""
    uvloop = _uvloop()
    return asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """`uvloop` or `asyncio`: which loop `loop` (default: the running one) is."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return "none"
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
