"""One direction of one proxied connection: its toxic chain, as Toxiproxy's ToxicLink (link.go).

With no toxic the chain is empty and bytes go straight from the source transport to the destination in
the protocol callback (the fast path: no task, no queue). With toxics, chunks queue and one pump task per
direction carries each through the stages in order (`Stage`: one toxic on this connection). The chain
ends the way Toxiproxy's does: when the source ends (EOF, or the connection lost) or a toxic closes the
stream, the toxics after that point drain what they hold and run their `end()` (slow_close waits there),
then the destination is closed; the other direction then sees its source end and drains in turn. So a
half-close travels through its own chain.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from maildrill.harness.faults.toxics import REGISTRY, Chunk, Toxic

QUEUE_HIGH = 1 << 20  # bytes queued before the pump: stop reading the source above this...
QUEUE_LOW = 256 * 1024  # ...and read again below this


class Connection(Protocol):
    """What a chain talks to: the proxied connection it is one direction of (dataplane's `Link`)."""

    @property
    def rng(self) -> random.Random: ...
    @property
    def closed(self) -> bool: ...
    def chain_done(self, chain: Chain) -> None: ...


class Stage:
    """One toxic on one direction of one connection: its behaviour instance (and so its state)."""

    def __init__(self, chain: Chain, toxic: Toxic) -> None:
        self.chain = chain
        self.toxic = toxic
        self.rng: random.Random = chain.link.rng
        self.behaviour = REGISTRY[toxic.type](self)
        self.active = False  # this run's toxicity draw
        self.closed = False  # closed its output: what reaches it is dropped
        self.removed = False
        self.removed_at = 0  # its index when removed: where what it still holds goes on
        self._sleep: asyncio.Future[bool] | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # --- run by the chain ----------------------------------------------------------------------------
    def run(self) -> None:
        """(Re)start: draw the toxicity (as Toxiproxy does on each run of a toxic's pipe), arm timers."""
        t = self.toxic.toxicity
        self.active = t >= 1.0 or self.rng.random() < t
        if self.active:
            self.behaviour.run()

    def interrupt(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        self.wake()
        if self.active:
            self.behaviour.interrupt()

    def rerun(self) -> None:
        self.interrupt()
        self.run()

    def wake(self) -> None:
        """End a sleep early (it returns False)."""
        if self._sleep is not None and not self._sleep.done():
            self._sleep.set_result(False)

    async def chunk(self, c: Chunk) -> None:
        if self.closed:
            return
        if self.active:
            await self.behaviour.chunk(c)
        else:
            await self.emit(c)

    async def end(self) -> None:
        if self.active and not self.closed:
            await self.behaviour.end()

    # --- for the behaviours ------------------------------------------------------------------------
    async def sleep(self, seconds: float) -> bool:
        """Sleep; False when interrupted (an update or removal) or the connection closed meanwhile."""
        if seconds <= 0:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        def wake() -> None:
            if not fut.done():
                fut.set_result(True)

        handle = loop.call_later(seconds, wake)
        self._sleep = fut
        try:
            return await fut
        finally:
            handle.cancel()
            self._sleep = None

    def later(self, seconds: float, fn: Callable[[], Any]) -> asyncio.TimerHandle:
        handle = asyncio.get_running_loop().call_later(seconds, fn)
        self._timers.append(handle)
        return handle

    async def emit(self, c: Chunk) -> None:
        await self.chain.deliver_after(self, c)

    def close(self) -> None:
        """Close this toxic's output: the toxics after it end, then the destination closes."""
        self.chain.close_at(self)


class Chain:
    """Bytes from `src` to `dst` (transports) through the toxics of one stream of one connection."""

    def __init__(self, link: Connection, stream: str) -> None:
        self.link = link
        self.stream = stream
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.stages: list[Stage] = []
        self.fast = False  # no toxic, no queue, no pump, destination connected: write in the callback
        self.queue: collections.deque[Chunk] = collections.deque()
        self.queued = 0
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self.eof = False
        self.closed_at: int | None = None  # index of the earliest stage that closed its output
        self.done = False
        self.dst_full = False  # the destination's write buffer is above its high-water mark
        self._src_paused = False

    # --- input ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.fast:
            self.dst.write(data)  # type: ignore[union-attr]
            return
        if self.done or self.closed_at is not None:
            return  # the stream is closed: what still arrives is dropped, as Toxiproxy's closed stub
        self.queue.append(Chunk(data, time.monotonic()))
        self.queued += len(data)
        if self.queued > QUEUE_HIGH:
            self.flow()
        self.kick()

    def end(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self.fast or (self.task is None and not self.queue and not self.stages):
            self.finish()
        else:
            self.kick()

    def set_dst(self, dst: asyncio.Transport) -> None:
        self.dst = dst
        if self.done:  # the source ended before the destination connected: pass the close on now
            dst.close()
            return
        self.flow()
        self.refresh()
        if self.queue:
            self.kick()

    def refresh(self) -> None:
        self.fast = (not self.stages and self.task is None and not self.queue and self.dst is not None
                     and not self.eof and not self.done)

    def flow(self) -> None:
        """Read the source unless the destination is missing or full, or too much is queued."""
        src = self.src
        if src is None or src.is_closing():
            return
        if self._src_paused:
            if self.dst is not None and not self.dst_full and self.queued < QUEUE_LOW:
                src.resume_reading()
                self._src_paused = False
        elif self.dst is None or self.dst_full or self.queued > QUEUE_HIGH:
            src.pause_reading()
            self._src_paused = True

    # --- toxics come and go ------------------------------------------------------------------------
    def add(self, toxic: Toxic, *, live: bool) -> None:
        """Append a stage (Toxiproxy adds to the end of the chain; the previous last toxic restarts)."""
        if self.done:
            return
        if live and self.stages:
            self.stages[-1].rerun()
        stage = Stage(self, toxic)
        self.stages.append(stage)
        self.fast = False
        stage.run()
        if live:
            self.kick()

    def update(self, toxic: Toxic) -> None:
        for s in self.stages:
            if s.toxic is toxic:
                s.rerun()
        self.kick()

    def remove(self, toxic: Toxic) -> None:
        i = next((i for i, s in enumerate(self.stages) if s.toxic is toxic), None)
        if i is None:
            return
        s = self.stages[i]
        s.interrupt()
        if s.behaviour.cleanup():  # Toxiproxy's timeout: removing it closes the stream there
            self.close_at(s)
            return
        s.removed, s.removed_at = True, i
        del self.stages[i]
        if i > 0:
            self.stages[i - 1].rerun()
        if self.closed_at is not None and self.closed_at > i:
            self.closed_at -= 1
        self.kick()

    # --- the pump ---------------------------------------------------------------------------------
    def kick(self) -> None:
        if self.done:
            return
        if self.task is None:
            self.fast = False
            self.task = asyncio.get_running_loop().create_task(self._pump())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _idle(self) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def _pump(self) -> None:
        try:
            while self.closed_at is None and not self.link.closed:
                if self.queue and self.dst is not None:
                    c = self.queue.popleft()
                    self.queued -= len(c.data)
                    if self._src_paused:
                        self.flow()
                    await self.stage_chunk(0, c)
                elif self.eof:
                    break
                elif not self.stages and not self.queue and self.dst is not None:
                    self.task = None
                    self.refresh()  # back to the fast path
                    return
                else:
                    await self._idle()
            start = 0 if self.closed_at is None else self.closed_at + 1
            i = start
            while i < len(self.stages) and not self.link.closed:  # the ends travel on, in order
                await self.stages[i].end()
                i += 1
        except (ConnectionError, OSError, RuntimeError):
            pass
        finally:
            if self.task is asyncio.current_task():
                self.task = None
        self.finish()

    async def stage_chunk(self, i: int, c: Chunk) -> None:
        if i < len(self.stages):
            await self.stages[i].chunk(c)
        elif self.dst is not None and not self.dst.is_closing():
            self.dst.write(c.data)

    async def deliver_after(self, stage: Stage, c: Chunk) -> None:
        if stage.removed:
            await self.stage_chunk(stage.removed_at, c)
            return
        try:
            i = self.stages.index(stage)
        except ValueError:
            return
        await self.stage_chunk(i + 1, c)

    def close_at(self, stage: Stage) -> None:
        stage.closed = True
        try:
            i = self.stages.index(stage)
        except ValueError:
            return
        if self.closed_at is None or i < self.closed_at:
            self.closed_at = i
        for earlier in self.stages[:i]:
            earlier.wake()  # what they hold goes on to the closed toxic, which drops it
        self.queue.clear()
        self.queued = 0
        self.kick()

    def finish(self) -> None:
        """The chain has ended: close the destination (FIN, or RST if it lingers 0); the link may be done."""
        if self.done:
            return
        self.done = True
        self.fast = False
        for s in self.stages:
            s.interrupt()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        dst = self.dst
        if dst is not None and not dst.is_closing():
            dst.close()
        self.link.chain_done(self)
