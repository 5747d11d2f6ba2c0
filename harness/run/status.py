"""Live counts of a running drill (read from the event files as they grow) and the one-line status display."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class Snapshot:
    t_s: float
    requests: int
    requests_ok: int
    requested: int  # corrs with at least one accepted (ok) request
    delivered: int  # of those, corrs with an accepted message
    accepted: int  # accepted messages (duplicates included)
    deferred: int  # 4xx replies from the fake MTAs
    rps: float

    @property
    def outstanding(self) -> int:
        return self.requested - self.delivered

    @property
    def deferred_ratio(self) -> float:
        tried = self.deferred + self.accepted
        return self.deferred / tried if tried else 0.0


class Tracker:
    """Tails every ``events/*.jsonl`` incrementally; `poll()` folds in what was appended since."""

    def __init__(self, events_dir: Path) -> None:
        self.dir = events_dir
        self.offsets: dict[Path, int] = {}
        self.requests = 0
        self.requests_ok = 0
        self.requested: set[str] = set()
        self.delivered: set[str] = set()
        self.accepted = 0
        self.deferred = 0
        self._last_t = 0.0
        self._last_requests = 0
        self._rps = 0.0

    def _lines(self) -> list[bytes]:
        out: list[bytes] = []
        for path in sorted(self.dir.glob("*.jsonl")):
            off = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    chunk = f.read()
            except OSError:
                continue
            end = chunk.rfind(b"\n") + 1  # an unfinished last line is read next time
            self.offsets[path] = off + end
            out += chunk[:end].splitlines()
        return out

    def poll(self, now_s: float) -> Snapshot:
        for line in self._lines():
            if b'"kind"' not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            kind, corr = e.get("kind"), e.get("corr")
            if kind == "load.request.completed":
                self.requests += 1
                if e.get("ok"):
                    self.requests_ok += 1
                    if corr:
                        self.requested.add(corr)
            elif kind == "mta.message.accepted":
                self.accepted += 1
                if corr:
                    self.delivered.add(corr)
            elif kind == "mta.reply.sent" and isinstance(e.get("code"), int) and 400 <= e["code"] < 500:
                self.deferred += 1
        if now_s - self._last_t >= 0.5:
            self._rps = (self.requests - self._last_requests) / (now_s - self._last_t)
            self._last_t, self._last_requests = now_s, self.requests
        return Snapshot(now_s, self.requests, self.requests_ok, len(self.requested),
                        len(self.requested & self.delivered), self.accepted, self.deferred, self._rps)


def status_line(s: Snapshot, *, phase: str, elapsed_s: float, faults: list[str]) -> str:
    active = ", ".join(faults) if faults else "none"
    return (f"[{elapsed_s:6.1f}s {phase:<8}] {s.rps:6.1f} req/s  requests {s.requests}  delivered "
            f"{s.delivered}/{s.requested}  outstanding {s.outstanding}  deferred {s.deferred_ratio:.1%}  "
            f"faults: {active}")


class StatusDisplay:
    """One line per second: rewritten in place on a terminal, plain lines otherwise, nothing when quiet."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._width = 0

    def show(self, line: str) -> None:
        if self.quiet:
            return
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self._width and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def say(self, text: str) -> None:
        """A message that is not a status line (always shown unless quiet)."""
        if self.quiet:
            return
        self.done()
        self.stream.write(text + "\n")
        self.stream.flush()
