"""The event store: append-only JSON Lines, one file per writer, merged time-ordered reads.

Writes go straight to the OS (one `os.write` on an O_APPEND descriptor per event, no user-space
buffer), so an event recorded before an SMTP reply is sent survives a `kill -9` of its process. A writer
made with ``flush_ms`` > 0 keeps events in memory instead and writes them ``flush_ms`` after the first
waiting one and at close (less CPU per event; a `kill -9` loses at most the last ``flush_ms`` of events,
a clean stop nothing). A caller that only needs its events handed over before some later action (a fake
vendor's reply) records them with ``then=``: they are written at the end of the event loop's turn, in one
write with every other such event of the turn (to the buffer, with ``flush_ms``), and each ``then`` runs
after that write.
Reads never fail on a bad file: what can be read is returned, what cannot is listed as a
`ReadProblem` naming the file and line.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from maildrill.harness.clock import Clock, MonotonicClock
from maildrill.harness.errors import WaitTimeout
from maildrill.harness.events import SCHEMA, SCHEMA_VERSION, Event, Scalar, encode_event, header
from orjson import dumps as _orjson_dumps

from maildrill.polling import poll_until, poll_until_async

_FIXED = frozenset({"t_s", "source", "kind", "corr"})  # every event line starts with these, in this order
_KIND_JSON: dict[str, bytes] = {}  # kind -> b'"<kind>","corr":', for EventWriter.record_many
MAX_FLUSH_MS = 10_000  # the longest EventWriter flush_ms (maildrill mta --events-flush-ms)

Predicate = Callable[[list[Event]], bool]


class EventWriter:
    """Writes one source's events to one file. `child()` shares the file under another source name."""

    def __init__(self, path: str | os.PathLike[str], source: str, clock: Clock | None = None, *,
                 flush_ms: float = 0.0, _fd: int | None = None, _buffer: _Buffer | None = None,
                 _turn: _Turn | None = None) -> None:
        self.path = Path(path)
        self.source = source
        self.clock: Clock = clock or MonotonicClock()
        self._owner = _fd is None
        self._source_json: tuple[str, bytes] = ("", b"")
        if _fd is None:
            if not 0 <= flush_ms <= MAX_FLUSH_MS:
                raise ValueError(f"flush_ms {flush_ms!r}: must be between 0 and {MAX_FLUSH_MS}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if os.fstat(fd).st_size == 0:
                os.write(fd, (json.dumps(header(source, pid=os.getpid())) + "\n").encode())
            self._fd: int | None = fd
        else:
            self._fd = _fd
        # flush_ms > 0: events wait in memory and are handed to the OS flush_ms after the first of them (and at
        # close), in one write; a kill -9 loses at most the last flush_ms of them. 0: each record call writes.
        self._buffer = _buffer if _buffer is not None else (_Buffer(self._fd, flush_ms / 1000) if flush_ms else None)
        # events recorded with `then` wait for the end of the loop's turn (shared by the children), then go to the
        # file (or the buffer) in one piece
        self._turn = _turn if _turn is not None else _Turn(self._fd, self._buffer)

    def _out(self, data: bytes) -> None:
        if self._turn.parts:  # events waiting for the turn's end go first, in the same write: record order
            self._turn.flush(data)
        elif self._buffer is not None:
            self._buffer.add(data)
        else:
            assert self._fd is not None
            os.write(self._fd, data)

    def flush(self) -> None:
        """Hand waiting events to the OS now: those recorded with `then` (whose `then`s run), and buffered ones."""
        self._turn.flush()
        if self._buffer is not None:
            self._buffer.flush()

    def record(self, kind: str, corr: str | None = None, **data: Scalar) -> Event:
        """Stamp a fact with the clock and hand it to the OS before returning (to the buffer, with flush_ms)."""
        event = Event(self.clock.now(), self.source, str(kind), corr, data)
        self.write(event)
        return event

    def record_many(self, items: list[tuple[str, str | None, dict[str, Scalar]]],
                    then: Callable[[bool], None] | None = None) -> None:
        """Several facts (kind, corr, data) stamped with one reading of the clock, handed to the OS (or the buffer)
        in one write (the fake vendors record a request's acceptances and its reply this way, before the reply is
        sent). With `then` (what waits for them: the vendor writing its reply), they wait for the end of the event
        loop's turn and go out in one write with every other such event of the turn (one system call for all the
        requests the loop served in that turn, not one each; with flush_ms, into the buffer); `then(True)` runs
        right after that write, `then(False)` if it failed. With no event loop running they are written at once."""
        if self._fd is None:
            raise ValueError(f"event writer for {self.path} is closed")
        t = self.clock.now()
        src = self.source
        out: bytes | None = None
        if math.isfinite(t):
            try:  # orjson: the same compact UTF-8 line as the stdlib encoder, in C, straight to bytes
                if self._source_json[0] != src:  # b',"source":"...","kind":', encoded once per source name
                    self._source_json = (src, b',"source":' + _orjson_dumps(src) + b',"kind":')
                head = b'{"t_s":' + _orjson_dumps(t) + self._source_json[1]
                lines = []
                last_corr: str | None = None  # a request's events share their corr: encoded once
                corr_json = b"null"
                for kind, corr, data in items:
                    body = _orjson_dumps(data)  # b"{...}": spliced after the four fixed fields, in their order
                    if len(body) == 2 or not data.keys().isdisjoint(_FIXED):  # nothing to splice / a field to override
                        body = _orjson_dumps({"t_s": t, "source": src, "kind": str(kind), "corr": corr, **data})
                        lines.append(body + b"\n")
                        continue
                    kind_json = _KIND_JSON.get(kind)
                    if kind_json is None:
                        kind_json = _orjson_dumps(str(kind)) + b',"corr":'
                        if len(_KIND_JSON) < 1024:
                            _KIND_JSON[kind] = kind_json
                    if corr is not last_corr:
                        last_corr, corr_json = corr, _orjson_dumps(corr)
                    lines.append(b"".join((head, kind_json, corr_json, b",", body[1:], b"\n")))
                out = b"".join(lines)
            except TypeError:  # something it refuses (a lone surrogate, an int over 64 bits): as before
                pass
        if out is None:
            out = "".join([encode_event({"t_s": t, "source": src, "kind": str(kind), "corr": corr, **data})
                           + "\n" for kind, corr, data in items]).encode()
        if then is None:
            self._out(out)
        else:
            self._turn.add(out, then)

    def write(self, event: Event) -> None:
        if self._fd is None:
            raise ValueError(f"event writer for {self.path} is closed")
        self._out((event.to_json() + "\n").encode())

    def write_many(self, events: Iterable[Event]) -> None:
        """Events another process recorded (a Locust worker's batch), handed to the OS in one write."""
        if self._fd is None:
            raise ValueError(f"event writer for {self.path} is closed")
        data = "".join(e.to_json() + "\n" for e in events).encode()
        if data:
            self._out(data)

    def child(self, source: str) -> EventWriter:
        return EventWriter(self.path, source, self.clock, _fd=self._fd, _buffer=self._buffer, _turn=self._turn)

    def close(self) -> None:
        if self._owner and self._fd is not None:
            self._turn.close()  # into the buffer, if any, which close then writes
            if self._buffer is not None:
                self._buffer.close()
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Buffer:
    """Events of one file (its writer and children) waiting to be handed to the OS, in record order: written
    `interval_s` after the first of them (on the running event loop's timer; at once when no loop runs), on
    `flush`, and at close."""

    __slots__ = ("_fd", "_parts", "_timer", "interval_s")

    def __init__(self, fd: int | None, interval_s: float) -> None:
        self._fd = fd
        self.interval_s = interval_s
        self._parts: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, data: bytes) -> None:
        self._parts.append(data)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parts and self._fd is not None:
            data = b"".join(self._parts)
            self._parts.clear()
            os.write(self._fd, data)

    def close(self) -> None:
        self.flush()
        self._fd = None


class _Turn:
    """Events of one file (its writer and children) recorded with `then`, waiting for the end of the event loop's
    turn: then written in one write (with flush_ms: added to the buffer), after which each waiting `then(True)` runs
    in record order (`then(False)` if the write failed). Any other write to the file first takes what waits along,
    in the same write, so the file keeps the record order and nothing written later overtakes a waiting event."""

    __slots__ = ("_buffer", "_fd", "_loop", "_scheduled", "_thens", "parts")

    def __init__(self, fd: int | None, buffer: _Buffer | None) -> None:
        self._fd = fd
        self._buffer = buffer
        self.parts: list[bytes] = []
        self._thens: list[Callable[[bool], None]] = []
        self._scheduled = False
        # (thread id, the loop running on it when last asked): asyncio.get_running_loop() makes a getpid() system
        # call on Python 3.11, once a turn here, which with one request a turn was one more per request
        self._loop: tuple[int, asyncio.AbstractEventLoop] | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop running on this thread, or None. A loop that is running on the thread it was found on
        is still the running one (a thread runs one loop at a time), so it is asked for once per loop."""
        cached, me = self._loop, threading.get_ident()
        if cached is not None and cached[0] == me and cached[1].is_running():
            return cached[1]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._loop = (me, loop)
        return loop

    def add(self, data: bytes, then: Callable[[bool], None]) -> None:
        self.parts.append(data)
        self._thens.append(then)
        if not self._scheduled:
            loop = self._running_loop()
            if loop is None:
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self._at_turn_end)

    def _at_turn_end(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self, more: bytes = b"") -> None:
        """Write what waits (and `more` after it, in the same write), then run the waiting `then`s."""
        parts, thens = self.parts, self._thens
        self.parts, self._thens = [], []
        if more:
            parts.append(more)
        ok = False
        try:
            if parts and self._fd is not None:
                if self._buffer is not None:
                    self._buffer.add(b"".join(parts))
                else:
                    os.write(self._fd, b"".join(parts))
            ok = self._fd is not None
        finally:
            for then in thens:
                then(ok)

    def close(self) -> None:
        self.flush()
        self._fd = None


@dataclass(frozen=True)
class ReadProblem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ReadResult:
    events: list[Event]
    problems: list[ReadProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


_REJECTED = object()  # a file whose header says it is not ours to read
# orjson reads an integer beyond 64 bits as a float. Every such integer has at least 19 digits (2**63 has 19), so a
# line with no run of 19 digits came out exactly as json would read it; one with such a run (or a harmless
# look-alike, a long id) goes the standard library's way. Mapping the digits to "0" and looking for 19 of them
# costs ~0.5 us a line in C, where a regex search took 4-6 us: a quarter of the whole read.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19


class _Tail:
    """Incremental reader of one JSONL file: keeps its offset and any unfinished last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lineno = 0
        self.pending = b""
        self.header_checked = False
        self.rejected = False

    def poll(self, problems: list[ReadProblem], *, final: bool) -> list[Event]:
        if self.rejected:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        lines = data.split(b"\n")
        self.pending = lines.pop()  # b"" when data ended with a newline
        if final and self.pending:
            lines.append(self.pending)
            self.pending = b""
            truncated_last = True
        else:
            truncated_last = False
        out: list[Event] = []
        for i, raw in enumerate(lines):
            self.lineno += 1
            got = self._parse(raw, truncated_last and i == len(lines) - 1, problems)
            if got is _REJECTED:
                return out
            if got is not None:
                out.append(got)  # type: ignore[arg-type]
        return out

    def stream(self, problems: list[ReadProblem]) -> Iterator[Event]:
        """Every event of the (finished) file, one line at a time: no list of them is ever held."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below; a generator cannot use `with` across yields)
        except FileNotFoundError:
            return
        with f:
            for raw in f:
                self.lineno += 1
                partial = not raw.endswith(b"\n")
                got = self._parse(raw, partial, problems)
                if got is _REJECTED:
                    return
                if got is not None:
                    yield got  # type: ignore[misc]

    def records(self, problems: list[ReadProblem], start: int = 0,
                end: int | None = None) -> Iterator[dict[str, Any]]:
        """`stream`, as checked flat records rather than `Event`s (the bounded analysis' read): the same lines
        accepted, the same problems listed; ``t_s`` made a float. orjson parses; a line it refuses that the
        standard library reads (NaN, a huge integer) is read by the standard library, so nothing changes.

        `start`/`end`: only the lines that begin in that byte range (`start` at a line's first byte), so that two
        processes can read one file (`analysis.split`); `self.offset` is left at the end of the last line read.
        A part that starts past the first byte is read with this reader's header state as it is: the caller sets
        it (`header_checked`), or reads the part with the reader that read the part before."""
        if self.rejected:
            return
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below; a generator cannot use `with` across yields)
        except FileNotFoundError:
            return
        loads, dict_, str_, float_, int_ = orjson.loads, dict, str, float, int
        digits, nineteen = _DIGITS_AS_ZERO, _NINETEEN_DIGITS
        name = self.path.name
        if start:
            f.seek(start)
        self.offset = start
        with f:
            for raw in f:
                if end is not None and self.offset >= end:
                    return
                self.offset += len(raw)
                self.lineno += 1
                try:
                    rec = loads(raw) if nineteen not in raw.translate(digits) else None
                except orjson.JSONDecodeError:
                    rec = None
                if type(rec) is dict_ and self.header_checked:
                    t = rec.get("t_s")
                    c = rec.get("corr")
                    tt = type(t)
                    if ((tt is float_ or tt is int_) and type(rec.get("source")) is str_
                            and type(rec.get("kind")) is str_ and (c is None or type(c) is str_)):
                        if tt is int_:
                            rec["t_s"] = float(t)  # type: ignore[arg-type]
                        yield rec
                        continue
                got = self._parse(raw, not raw.endswith(b"\n"), problems, name)  # the slow path decides
                if got is _REJECTED:
                    return
                if got is not None:
                    e: Event = got  # type: ignore[assignment]
                    yield {**e.data, "t_s": e.t_s, "source": e.source, "kind": e.kind, "corr": e.corr}

    def _parse(self, raw: bytes, is_last_partial: bool, problems: list[ReadProblem],
               name: str | None = None) -> Event | object | None:
        name = name or self.path.name
        if not raw.strip():
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            why = ("truncated last line (its writer stopped mid-write); skipped" if is_last_partial
                   else "not JSON; skipped")
            problems.append(ReadProblem(name, self.lineno, why))
            return None
        if not self.header_checked:
            self.header_checked = True
            if isinstance(rec, dict) and rec.get("schema") == SCHEMA:
                if rec.get("version") != SCHEMA_VERSION:
                    problems.append(ReadProblem(
                        name, self.lineno,
                        f"event schema version {rec.get('version')!r}, this maildrill reads version "
                        f"{SCHEMA_VERSION}; whole file skipped"))
                    self.rejected = True
                    return _REJECTED
                return None
            problems.append(ReadProblem(name, self.lineno, "no maildrill.events header line; read anyway"))
        if not isinstance(rec, dict):
            problems.append(ReadProblem(name, self.lineno, "not an event object; skipped"))
            return None
        try:
            return Event.from_dict(rec)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(ReadProblem(name, self.lineno, f"not an event ({exc}); skipped"))
            return None


def _sort_key(e: Event) -> tuple[float, str]:
    return (e.t_s, e.source)


class EventStore:
    """A directory of ``*.jsonl`` event files (a run's ``events/``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def writer(self, name: str, source: str | None = None, clock: Clock | None = None) -> EventWriter:
        """A writer for ``<directory>/<name>.jsonl``; `name` must be unique per writing process."""
        return EventWriter(self.directory / f"{name}.jsonl", source or name, clock)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl")) if self.directory.exists() else []

    def read(self, files: Iterable[Path] | None = None) -> ReadResult:
        """Every readable event of every file, in time order (ties: by source, then file order)."""
        problems: list[ReadProblem] = []
        events: list[Event] = []
        paths = sorted(files) if files is not None else self.files()
        for path in paths:
            events.extend(_Tail(path).poll(problems, final=True))
        events.sort(key=_sort_key)
        return ReadResult(events, problems, [p.name for p in paths])

    def events(self) -> list[Event]:
        return self.read().events

    def stream(self, problems: list[ReadProblem], files: Iterable[Path] | None = None) -> Iterator[Event]:
        """Every readable event, file after file, *not* in time order, holding none of them: for analyses
        that do not care about order (maildrill.harness.analysis) over runs too big to load. Problems are appended
        to `problems` as they are met."""
        for path in sorted(files) if files is not None else self.files():
            yield from _Tail(path).stream(problems)

    def records(self, problems: list[ReadProblem], files: Iterable[Path] | None = None) -> Iterator[dict[str, Any]]:
        """`stream` as flat event records (``t_s``, ``source``, ``kind``, ``corr`` and the data fields in one
        dict, ``t_s`` a float), without building an `Event` per line: what `analysis.join.join_records` reads."""
        for path in sorted(files) if files is not None else self.files():
            yield from _Tail(path).records(problems)

    def follow(self) -> Follower:
        return Follower(self)

    def wait_for(self, predicate: Predicate, timeout_s: float, *, what: str = "condition",
                 poll_s: float = 0.02) -> list[Event]:
        """Block until `predicate(events so far)` holds; return those events. Raises WaitTimeout."""
        follower = self.follow()
        return poll_until(lambda: _holding(predicate, follower), timeout_s, interval_s=poll_s,
                          error=lambda: WaitTimeout(_timeout_message(what, timeout_s, follower.poll())))[0]

    async def wait_for_async(self, predicate: Predicate, timeout_s: float, *, what: str = "condition",
                             poll_s: float = 0.02) -> list[Event]:
        follower = self.follow()
        return (await poll_until_async(lambda: _holding(predicate, follower), timeout_s, interval_s=poll_s,
                                       error=lambda: WaitTimeout(_timeout_message(what, timeout_s,
                                                                                  follower.poll()))))[0]


class Follower:
    """Reads new events as files grow; `poll()` returns all events seen so far, time-ordered."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.tails: dict[Path, _Tail] = {}
        self.events: list[Event] = []
        self.problems: list[ReadProblem] = []

    def poll(self) -> list[Event]:
        new: list[Event] = []
        for path in self.store.files():
            tail = self.tails.get(path)
            if tail is None:
                tail = self.tails[path] = _Tail(path)
            new.extend(tail.poll(self.problems, final=False))
        if new:
            self.events.extend(new)
            self.events.sort(key=_sort_key)
        return self.events


def _holding(predicate: Predicate, follower: Follower) -> tuple[list[Event]] | None:
    """The events so far, boxed (an empty list can satisfy a predicate), when `predicate` holds for them."""
    events = follower.poll()
    return (events,) if predicate(events) else None


def _timeout_message(what: str, timeout_s: float, events: list[Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    seen = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "no events"
    return f"timed out after {timeout_s:g} s waiting for {what}; saw {seen}"
