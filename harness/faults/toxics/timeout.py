"""`timeout`: swallows the stream's data and closes it after `timeout` ms without data (toxics/timeout.go).

An idle timer: every chunk reaching the toxic starts it again, so a stream that keeps sending stays open;
0 holds the stream forever. Removing the toxic closes the stream, as Toxiproxy's Cleanup does.
"""

from __future__ import annotations

import asyncio

from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour


class Timeout(ToxicBehaviour):
    type = "timeout"
    defaults = {"timeout": 0}
    summary = ("data is swallowed; the stream closes after timeout ms without data on it (0: never); "
               "removing the toxic closes the connections it held")

    timer: asyncio.TimerHandle | None = None

    def run(self) -> None:
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        ms = self.attr("timeout")
        self.timer = self.stage.later(ms / 1000.0, self.stage.close) if ms > 0 else None

    def interrupt(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def chunk(self, c: Chunk) -> None:
        self._arm()  # swallowed; the idle timer starts again

    def cleanup(self) -> bool:
        return True
