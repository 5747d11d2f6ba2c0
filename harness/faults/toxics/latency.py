"""`latency`: every chunk leaves `latency` ± `jitter` ms after it arrived (Toxiproxy's toxics/latency.go).

The delay counts from the chunk's timestamp, and the timestamp moves on by the delay, so two latency toxics
on one stream add up, and a burst of chunks is delayed as a whole rather than one after another.
"""

from __future__ import annotations

import time

from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour


class Latency(ToxicBehaviour):
    type = "latency"
    defaults = {"latency": 0, "jitter": 0}
    summary = "each chunk delayed by latency ± jitter ms from its arrival"

    def delay_s(self) -> float:
        delay, jitter = self.attr("latency"), self.attr("jitter")
        if jitter > 0:
            delay += self.stage.rng.randrange(-jitter, jitter)  # Go: rand.Int63n(2*jitter) - jitter
        return delay / 1000.0

    async def chunk(self, c: Chunk) -> None:
        wait = self.delay_s() - (time.monotonic() - c.ts)
        if wait > 0:
            await self.stage.sleep(wait)  # interrupted (update, removal): the chunk goes on at once
        c.ts += wait
        await self.stage.emit(c)
