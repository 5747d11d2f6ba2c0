"""`slicer`: chunks cut into pieces of about `average_size` ± `size_variation` bytes, with `delay` µs after
every piece, the last one too (Toxiproxy's toxics/slicer.go, its halving included)."""

from __future__ import annotations

import random

from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour


def cut(n: int, avg: int, var: int, rng: random.Random) -> list[tuple[int, int]]:
    """Toxiproxy's recursive halving of [0, n), iteratively; bounds kept inside the chunk."""
    if avg <= 0 or n <= 0:
        return [(0, n)]
    out: list[tuple[int, int]] = []
    stack = [(0, n)]
    while stack:
        a, b = stack.pop()
        if (b - a) - avg <= var:
            out.append((a, b))
            continue
        mid = a + (b - a) // 2 + (rng.randrange(-var, var) if var > 0 else 0)
        mid = min(max(mid, a + 1), b - 1)
        stack.append((mid, b))
        stack.append((a, mid))
    return out


class Slicer(ToxicBehaviour):
    type = "slicer"
    defaults = {"average_size": 0, "size_variation": 0, "delay": 0}
    summary = "chunks cut into pieces of average_size ± size_variation bytes, delay µs after each piece"

    async def chunk(self, c: Chunk) -> None:
        pieces = cut(len(c.data), self.attr("average_size"), self.attr("size_variation"), self.stage.rng)
        for a, b in pieces:
            await self.stage.emit(Chunk(c.data[a:b], c.ts))
            if not await self.stage.sleep(self.attr("delay") / 1e6):
                await self.stage.emit(Chunk(c.data[b:], c.ts))  # interrupted: the rest at once
                return
