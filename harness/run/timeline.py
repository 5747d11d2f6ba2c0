"""The fault timeline: actions fire at `at_s` on the run clock, are recorded with their lag; `for_s` undoes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from maildrill.harness.clock import Clock
from maildrill.harness.scenario.models import ActionSpec
from maildrill.harness.scenario.scaling import action_label
from maildrill.harness.store import EventWriter

Undo = Callable[[], Awaitable[None]]


class MTAControl(Protocol):
    behaviors: list[Any]

    def set_behaviors(self, behaviors: list[Any], *, by: str = ...) -> None: ...


class SUTControl(Protocol):
    async def crash(self) -> None: ...

    async def restart(self) -> None: ...


class ProxyControl(Protocol):
    def add_toxic(self, proxy: str, *, type: str, attributes: dict[str, Any], stream: str = ...,
                  toxicity: float = ..., name: str | None = ...) -> str: ...

    def remove_toxic(self, proxy: str, toxic: str) -> None: ...

    def set_enabled(self, name: str, enabled: bool) -> None: ...


@dataclass(frozen=True)
class Fired:
    index: int
    target: str
    what: str
    scheduled_t_s: float
    lag_ms: float


def _is_clear(action: ActionSpec) -> bool:
    """An action that ends faults rather than starting one (plain accept, or re-enabling a proxy)."""
    if action.sut is not None:
        return False
    if action.mta is not None or action.vendor is not None:
        return all(b.kind == "accept" and b.probability == 1.0 for b in action.set or [])
    return action.enabled is True


class Timeline:
    """Schedules every action relative to `t0_s` (the run-clock time of load second 0). `active` names
    the faults in force now (for the status line). Actions that fail are recorded as `run.degraded`."""

    def __init__(self, actions: list[ActionSpec], *, writer: EventWriter, clock: Clock,
                 mtas: dict[str, MTAControl], proxy: ProxyControl | None,
                 on_degraded: Callable[[str, str], None], sut: SUTControl | None = None,
                 vendors: dict[str, MTAControl] | None = None) -> None:
        self.actions = actions
        self.writer = writer
        self.clock = clock
        self.mtas = mtas
        self.vendors = vendors or {}  # fake email-API vendors: the same behaviour control as an MTA
        self.proxy = proxy
        self.sut = sut
        self.on_degraded = on_degraded
        self.active: dict[int, str] = {}
        self.fired: list[Fired] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, t0_s: float) -> None:
        for i, action in enumerate(self.actions):
            self._tasks.append(asyncio.ensure_future(self._run(i, action, t0_s)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    async def _until(self, t_s: float) -> None:
        delay = t_s - self.clock.now()
        if delay > 0:
            await asyncio.sleep(delay)  # a schedule, not a wait for a condition

    async def _run(self, i: int, action: ActionSpec, t0_s: float) -> None:
        scheduled = t0_s + action.at_s
        until = scheduled + action.for_s if action.for_s is not None else None
        what = action_label(action)
        await self._until(scheduled)
        try:
            undo = await self._apply(action)
        except Exception as exc:
            self.on_degraded("timeline", f"timeline[{i}] ({action.target} {what}) failed: {exc}")
            return
        lag_ms = (self.clock.now() - scheduled) * 1000
        if not _is_clear(action):
            self.active[i] = f"{action.target} {what}"
        self.fired.append(Fired(i, action.target, what, scheduled, lag_ms))
        self.writer.record("run.action.fired", None, action=i, target=action.target, what=what,
                           scheduled_t_s=round(scheduled, 6), lag_ms=round(lag_ms, 3),
                           until_t_s=None if until is None else round(until, 6))
        if until is None:
            return
        await self._until(until)
        try:
            await undo()
        except Exception as exc:
            self.on_degraded("timeline", f"undoing timeline[{i}] ({action.target} {what}) failed: {exc}")
            return
        self.active.pop(i, None)
        self.writer.record("run.action.undone", None, action=i, target=action.target, what=what,
                           scheduled_t_s=round(until, 6), lag_ms=round((self.clock.now() - until) * 1000, 3),
                           until_t_s=None)

    async def _apply(self, action: ActionSpec) -> Undo:
        if action.sut is not None:
            sut = self.sut
            if sut is None:
                raise RuntimeError("there is no SUT to crash")
            await sut.crash()
            return sut.restart
        if action.mta is not None or action.vendor is not None:
            mta = self.mtas[action.mta] if action.mta is not None else self.vendors[action.vendor or ""]
            before = list(mta.behaviors)
            mta.set_behaviors(list(action.set or []), by="timeline")
            # a later action on the same MTA or vendor replaces this one: it is no longer "active"
            for j, label in list(self.active.items()):
                if label.startswith(f"{action.target} "):
                    self.active.pop(j, None)

            async def undo_mta() -> None:
                mta.set_behaviors(before, by="timeline")

            return undo_mta
        proxy, name = self.proxy, action.proxy
        assert name is not None
        if proxy is None:
            raise RuntimeError("no fault proxy is running")
        if action.toxic is not None:
            t = action.toxic
            toxic = await asyncio.to_thread(proxy.add_toxic, name, type=t.type, attributes=dict(t.attributes),
                                            stream=t.stream, toxicity=t.toxicity, name=t.name)

            async def undo_toxic() -> None:
                await asyncio.to_thread(proxy.remove_toxic, name, toxic)

            return undo_toxic
        enabled = bool(action.enabled)
        await asyncio.to_thread(proxy.set_enabled, name, enabled)

        async def undo_enabled() -> None:
            await asyncio.to_thread(proxy.set_enabled, name, not enabled)

        return undo_enabled
