"""What a toxic is to the data plane: the operations a direction's pump calls on it, per connection.

A toxic type is a `ToxicBehaviour` subclass in its own module (as Toxiproxy keeps one file per toxic). One
instance exists per connection and toxic, made when the toxic is added (or when the connection opens, for
toxics already there), so per-connection state such as `limit_data`'s byte count starts then and lasts
until the toxic is removed. The pump calls:

- `run()` when the toxic starts working on the connection: on connect or add, and again after an update
  (Toxiproxy restarts a toxic's pipe then: timers restart, the toxicity is drawn again);
- `chunk(c)` for each chunk reaching it, in order; it passes chunks on with `await stage.emit(c)` (or
  swallows them);
- `end()` when its input has ended (the source closed, or an earlier toxic closed the stream); once it
  returns, the toxics after it end, then the destination is closed;
- `interrupt()` before an update or removal, and `cleanup()` on removal (True: close the stream there).

`stage` (a `Stage`: what the chain's stage offers a behaviour, so a toxic never imports the chain) gives it
the toxic's current definition (`stage.toxic`), the seeded random source, `sleep()` (returns False when
interrupted: pass what you hold on at once, as Toxiproxy does), `later()` for timers, `emit()` and `close()`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, ClassVar, Protocol


class Definition(Protocol):
    """The toxic's current definition, as a behaviour reads it."""

    @property
    def attributes(self) -> dict[str, int]: ...


class Stage(Protocol):
    """What a behaviour talks to: one toxic on one direction of one connection."""

    @property
    def toxic(self) -> Definition: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def removed(self) -> bool: ...
    async def sleep(self, seconds: float) -> bool: ...
    def later(self, seconds: float, fn: Callable[[], Any]) -> asyncio.TimerHandle: ...
    async def emit(self, c: Chunk) -> None: ...
    def close(self) -> None: ...


class Chunk:
    """Bytes on their way through a stream's toxics, with the time they arrived (moved on by latency)."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class ToxicBehaviour:
    type: ClassVar[str]
    defaults: ClassVar[dict[str, int]]  # attribute -> default (Toxiproxy's JSON names)
    summary: ClassVar[str]

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def attr(self, name: str) -> int:
        return self.stage.toxic.attributes[name]

    def run(self) -> None:
        """(Re)started on this connection."""

    def interrupt(self) -> None:
        """About to be updated or removed: stop timers."""

    async def chunk(self, c: Chunk) -> None:
        await self.stage.emit(c)

    async def end(self) -> None:
        """The input ended; return when the output may close."""

    def cleanup(self) -> bool:
        """Removed from a live connection: True closes the stream at this toxic (Toxiproxy's timeout)."""
        return False
