"""Teardown of a drill's background tasks ends them even when one loses a cancellation."""

from __future__ import annotations

import asyncio

from maildrill.harness.run.drill import _cancel_all


def test_a_task_that_swallows_its_first_cancel_is_cancelled_again_until_it_ends() -> None:
    # What Python 3.11's asyncio.wait_for does when its inner await completes in the loop turn of the cancel:
    # the result comes back and the cancellation is gone, so a sampling loop goes on (a drill hung in teardown).
    seen: list[str] = []

    async def probe() -> None:
        swallowed = False
        while True:
            try:
                await asyncio.sleep(0.01)
                seen.append("sample")
            except asyncio.CancelledError:
                if swallowed:
                    seen.append("cancelled")
                    raise
                swallowed = True
                seen.append("lost a cancel")

    async def main() -> list[bool]:
        tasks = [asyncio.ensure_future(probe()), asyncio.ensure_future(asyncio.sleep(3600))]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(_cancel_all(tasks), 30)
        return [t.cancelled() for t in tasks]

    assert asyncio.run(main()) == [True, True]
    lost = seen.index("lost a cancel")
    # the loop went on sampling after the lost cancel, and the second cancel ended it
    assert seen[lost + 1:-1] and set(seen[lost + 1:-1]) == {"sample"} and seen[-1] == "cancelled"
