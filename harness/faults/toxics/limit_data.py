"""`limit_data`: `bytes` bytes pass, then the stream closes (Toxiproxy's toxics/limit_data.go).

The count is per connection and starts when the toxic is added (bytes before it are not counted); an
update keeps it. Stacked limits each apply.
"""

from __future__ import annotations

from maildrill.harness.faults.toxics.base import Chunk, Stage, ToxicBehaviour


class LimitData(ToxicBehaviour):
    type = "limit_data"
    defaults = {"bytes": 0}
    summary = "that many bytes pass (counted from when the toxic was added), then the stream closes"

    def __init__(self, stage: Stage) -> None:
        super().__init__(stage)
        self.sent = 0  # per-connection state: lives as long as the toxic on this connection

    async def chunk(self, c: Chunk) -> None:
        room = max(0, self.attr("bytes") - self.sent)
        if room < len(c.data):
            c = Chunk(c.data[:room], c.ts)
        if c.data:
            await self.stage.emit(c)
            self.sent += len(c.data)
        if self.attr("bytes") - self.sent <= 0:
            self.stage.close()
