"""Run a Fleet in a background thread, for synchronous code (tests, smtplib clients, demos).

    with FleetThread(FleetSpec(mtas=[MTASpec(name="primary", preset="gmail")])) as fleet:
        smtplib.SMTP("127.0.0.1", fleet["primary"].port)
        fleet.set_behaviors("primary", [{"kind": "go_dark", "mode": "lose_ack"}])
        fleet.wait_for(lambda evs: any(e["kind"] == "mta.message.accepted" for e in evs), 10)
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from maildrill.fake_mta.clock import Clock
from maildrill.fake_mta.config import BehaviorSpec, FleetSpec
from maildrill.fake_mta.fleet import Fleet
from maildrill.fake_mta.recording import MemoryRecorder, Recorder
from maildrill.fake_mta.server import FakeMTA

from maildrill.polling import poll_until

T = TypeVar("T")


class FleetThread:
    """A Fleet served by an event loop in a daemon thread; every call into it runs on that loop."""

    def __init__(self, spec: FleetSpec, *, recorder: Recorder | None = None, clock: Clock | None = None,
                 seed: int = 0, control: bool = True) -> None:
        self.memory = recorder if isinstance(recorder, MemoryRecorder) else None
        if recorder is None:
            self.memory = recorder = MemoryRecorder("mta", clock)
        self._args: dict[str, Any] = {"recorder": recorder, "clock": clock, "seed": seed, "control": control}
        self.spec = spec
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="maildrill-fleet", daemon=True)
        self.fleet: Fleet | None = None

    def __enter__(self) -> FleetThread:
        self._thread.start()
        try:
            self.fleet = self.run(self._start())
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.fleet is not None:
                self.run(self.fleet.stop())
        finally:
            self._shutdown()

    async def _start(self) -> Fleet:
        fleet = Fleet(self.spec, **self._args)
        await fleet.start()
        return fleet

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()

    def run(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run a coroutine on the fleet's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float = 30.0, **kwargs: Any) -> T:
        """Call `fn` on the fleet's loop (where FakeMTA methods must run) and return its result."""
        done: Future[T] = Future()

        def go() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(go)
        return done.result(timeout_s)

    def __getitem__(self, name: str) -> FakeMTA:
        assert self.fleet is not None
        mta: FakeMTA = self.fleet[name]
        return mta

    @property
    def control_url(self) -> str | None:
        return self.fleet.control_url if self.fleet else None

    def set_behaviors(self, name: str, behaviors: Sequence[BehaviorSpec | dict[str, Any]], *, by: str = "api") -> None:
        self.call(self[name].set_behaviors, behaviors, by=by)

    def reset(self, name: str) -> None:
        self.call(self[name].reset)

    def events(self, *, kind: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of the recorded events (MemoryRecorder only), optionally filtered."""
        if self.memory is None:
            raise TypeError("events() needs the default MemoryRecorder; read your own recorder instead")
        evs = list(self.memory.events)
        return [e for e in evs if (kind is None or e["kind"] == kind) and (source is None or e["source"] == source)]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float,
                 *, what: str = "condition") -> list[dict[str, Any]]:
        """Poll the events until `predicate` holds; raises TimeoutError naming `what` after `timeout_s`."""
        def timeout() -> TimeoutError:
            kinds = sorted({e["kind"] for e in self.events()})
            return TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}; saw kinds {kinds}")

        def holding() -> tuple[list[dict[str, Any]]] | None:
            evs = self.events()
            return (evs,) if predicate(evs) else None  # boxed: an empty list can satisfy a predicate

        return poll_until(holding, timeout_s, interval_s=0.01, error=timeout)[0]


class WireClient:
    """A raw SMTP client on a TCP socket: exact reply lines, and whether the server closed."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def _line(self) -> str | None:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self) -> list[str]:
        """One whole reply (all lines of a multi-line reply); [] when the server closed instead."""
        lines: list[str] = []
        while True:
            line = self._line()
            if line is None:
                return lines
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def cmd(self, line: str | bytes) -> list[str]:
        self.send(line)
        return self.reply()

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def closed_by_server(self) -> bool:
        """True when the server has closed: the next read gets EOF (or a reset)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def without_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without their times (and the client's ephemeral port), for whole-list comparison."""
    out = []
    for e in events:
        e = {k: v for k, v in e.items() if k not in ("t_s", "source")}
        if e["kind"] == "mta.connection.opened":
            e["peer"] = e["peer"].rsplit(":", 1)[0]
        out.append(e)
    return out


def api_events(fleet: FleetThread, name: str, *, closed: int = 0, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """One vendor's (or MTA's) events without times, listener and behaviour-change events; first waits until
    `closed` connections have closed (clients close theirs a moment after the reply they read)."""
    source = f"mta/{name}"
    fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" and e["source"] == source
                                   for e in evs) >= closed, timeout_s, what=f"{closed} closed connection(s)")
    skip = ("mta.listener.opened", "mta.listener.closed", "mta.behaviors.changed")
    return without_times([e for e in fleet.events(source=source) if e["kind"] not in skip])


def reply_event(corr: str | None, conn: int, txn: int, code: int, status: int, *, api: str, path: str,
                api_key: str | None, rcpt: str | None, text: str, behavior: str = "default",
                error_code: str | None = None, mail_from: str | None = "app@app.drill.test", rcpt_count: int = 1,
                idempotency_key: str | None = None, method: str = "POST") -> dict[str, Any]:
    """The mta.reply.sent a fake vendor records, for whole-list comparisons in tests."""
    from maildrill.fake_mta.vendors.base import ENHANCED

    return {"kind": "mta.reply.sent", "corr": corr, "conn": conn, "txn": txn, "verb": "API", "code": code,
            "enhanced": ENHANCED.get(code), "text": text, "behavior": behavior, "closes": False,
            "mail_from": mail_from, "rcpt": rcpt, "rcpt_count": rcpt_count if rcpt else 0, "api": api,
            "method": method, "path": path, "http_status": status, "error_code": error_code, "api_key": api_key,
            "idempotency_key": idempotency_key}
