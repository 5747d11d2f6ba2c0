"""Where the fake MTA reports facts: a tiny sink protocol, so `fake_mta` needs nothing from `harness`.

`maildrill.harness.store.EventWriter` implements `Recorder` (JSON Lines on disk, written before the SMTP reply
it describes is sent). `MemoryRecorder` keeps events in a list for standalone use and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from maildrill.fake_mta.clock import Clock, MonotonicClock

from maildrill.vocabulary import EVENT_KINDS

Scalar = str | int | float | bool | None


def declared(kind: str) -> str:
    """`kind` as a plain string; ValueError for a kind maildrill.vocabulary does not declare."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"undeclared event kind {kind!r}: declare it, with its fields, in maildrill/vocabulary.py")
    return str(kind)


class Recorder(Protocol):
    """Receives one fact at a time. `record` must not return before the fact is durable enough
    for the implementation's promise (EventWriter: handed to the OS)."""

    source: str

    def record(self, kind: str, corr: str | None = None, **data: Scalar) -> None: ...

    def child(self, source: str) -> Recorder:
        """A recorder for a sub-component (e.g. one MTA of a fleet) with its own source name."""
        ...


class MemoryRecorder:
    """Keeps events as dicts (``t_s, source, kind, corr`` + data) in `events`, shared with children. Refuses
    (ValueError) a kind maildrill.vocabulary does not declare, so a test of a writer fails on a misspelt one."""

    def __init__(
        self, source: str = "mta", clock: Clock | None = None, events: list[dict[str, Any]] | None = None
    ) -> None:
        self.source = source
        self.clock = clock or MonotonicClock()
        self.events: list[dict[str, Any]] = [] if events is None else events

    def record(self, kind: str, corr: str | None = None, **data: Scalar) -> None:
        self.events.append({"t_s": self.clock.now(), "source": self.source, "kind": declared(kind), "corr": corr,
                            **data})

    def record_many(self, items: list[tuple[str, str | None, dict[str, Scalar]]],
                    then: Callable[[bool], None] | None = None) -> None:
        """Several facts at one clock reading (as EventWriter.record_many); `then(True)` runs once they are kept."""
        t = self.clock.now()
        for kind, corr, data in items:
            self.events.append({"t_s": t, "source": self.source, "kind": declared(kind), "corr": corr, **data})
        if then is not None:
            then(True)

    def child(self, source: str) -> MemoryRecorder:
        return MemoryRecorder(source, self.clock, self.events)

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]


class NullRecorder:
    """Keeps nothing: for a long-running fleet whose events nobody reads (`maildrill mta` without --events), so
    its memory does not grow with every message as a MemoryRecorder's would."""

    def __init__(self, source: str = "mta") -> None:
        self.source = source

    def record(self, kind: str, corr: str | None = None, **data: Scalar) -> None:
        return None

    def child(self, source: str) -> NullRecorder:
        return NullRecorder(source)
