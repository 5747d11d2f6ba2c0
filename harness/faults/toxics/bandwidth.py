"""`bandwidth`: the stream paced to `rate` KB/s (1 KB = 1000 bytes), as Toxiproxy's toxics/bandwidth.go.

A chunk larger than 100 ms worth of data goes on in 100 ms slices (`rate` * 100 bytes each), the rest when
its time is due; the time owed carries over from chunk to chunk while the toxic runs.
"""

from __future__ import annotations

import time

from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour

SLICE_S = 0.1


class Bandwidth(ToxicBehaviour):
    type = "bandwidth"
    defaults = {"rate": 0}
    summary = "paced to rate KB/s (1 KB = 1000 bytes), in 100 ms slices"

    def run(self) -> None:
        self.owed_s = 0.0

    async def chunk(self, c: Chunk) -> None:
        rate = self.attr("rate")
        if rate <= 0:
            self.owed_s = 0.0
            await self.stage.emit(c)
            return
        self.owed_s += len(c.data) / (rate * 1000.0)
        step = rate * 100
        data = c.data
        while len(data) > step:
            if not await self.stage.sleep(SLICE_S):
                await self.stage.emit(Chunk(data, c.ts))  # interrupted: nothing dropped
                return
            await self.stage.emit(Chunk(data[:step], c.ts))
            data = data[step:]
            self.owed_s -= SLICE_S
        start = time.monotonic()
        if self.owed_s > 0:
            await self.stage.sleep(self.owed_s)
        self.owed_s -= time.monotonic() - start
        await self.stage.emit(Chunk(data, c.ts))
