"""`slow_close`: the stream's close is passed on `delay` ms after its source closed (toxics/slow_close.go)."""

from __future__ import annotations

from maildrill.harness.faults.toxics.base import ToxicBehaviour


class SlowClose(ToxicBehaviour):
    type = "slow_close"
    defaults = {"delay": 0}
    summary = "the close is passed on delay ms after the source closed"

    async def end(self) -> None:
        # an update restarts the wait (Toxiproxy re-runs the toxic); a removal ends it
        while not await self.stage.sleep(self.attr("delay") / 1000.0) and not self.stage.removed:
            pass
