"""`reset_peer`: swallows data; `timeout` ms after the first chunk the stream is closed (toxics/reset_peer.go).

On a connection opened while the toxic exists both sockets were set to linger 0, so that close is a TCP
RST on both sides; added to a connection already open, Toxiproxy's close is an ordinary FIN, and so is ours.
"""

from __future__ import annotations

import asyncio

from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour


class ResetPeer(ToxicBehaviour):
    type = "reset_peer"
    defaults = {"timeout": 0}
    summary = ("data is swallowed; timeout ms after the first chunk the connection closes: a TCP RST on "
               "connections opened while the toxic exists, a FIN on those already open")

    async def chunk(self, c: Chunk) -> None:
        await asyncio.sleep(self.attr("timeout") / 1000.0)  # Toxiproxy's wait here is not interruptible
        self.stage.close()
