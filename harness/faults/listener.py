"""One proxy (name, listen, upstream, toxics, open links) and its listener, on public asyncio APIs only.

The accept loop: on asyncio's own loop, the listening socket's readiness (`add_reader`) accepts and
hands each connection to `loop.connect_accepted_socket` (asyncio's Server is not used: in CPython 3.11,
closing one while it accepts trips an assertion in Server._attach and leaks the half-made transport);
on uvloop, `loop.create_server`, which accepts in C and closes cleanly mid-accept. A connection accepted
as the listener closes is dropped, as Toxiproxy's stopped proxy drops it.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any, Protocol

from maildrill.harness.faults import dataplane
from maildrill.harness.faults.dataplane import ClientSide, Link
from maildrill.harness.faults.toxics import Toxic
from maildrill.harness.netcheck import is_loopback_host


class Owner(dataplane.Owner, Protocol):
    """What a proxy talks to (the embedded server, so this never imports it): its seeded random source
    and whether non-loopback addresses are allowed, besides what the data plane counts on it."""

    @property
    def rng(self) -> random.Random: ...
    @property
    def allow_remote(self) -> bool: ...


class APIError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def split_address(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = str(addr).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise APIError(f"bad request body: {what} {addr!r} must be HOST:PORT (e.g. 127.0.0.1:0)", 400)
    return host.strip("[]") or "127.0.0.1", int(port)


class Listener:
    """A listening socket whose accepted connections become `ClientSide` protocols of `proxy`."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.open = False
        self.sock: socket.socket | None = None
        self.server: asyncio.AbstractServer | None = None
        self.accepting: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; the bound port. Raises OSError."""
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=1024)
        sock.setblocking(False)
        bound: int = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self.open = True
        if "uvloop" in type(loop).__module__:
            self.server = await loop.create_server(lambda: ClientSide(self), sock=sock, backlog=1024)
        else:
            self.sock = sock
            loop.add_reader(sock.fileno(), self._accept_ready)
        return bound

    def _accept_ready(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(128):
            if self.sock is None:
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next readiness
                return
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(lambda: ClientSide(self), conn))
            self.accepting.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self.accepting.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a client that left before its transport was made needs nothing more

    def close(self) -> None:
        self.open = False
        sock, self.sock = self.sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        server, self.server = self.server, None
        if server is not None:
            server.close()


class Proxy:
    """A proxy as the API shows it, and what it runs: its listener and its links."""

    def __init__(self, owner: Owner, name: str, listen: str, upstream: str) -> None:
        self.owner = owner
        self.name = name
        self.listen_host, self.listen_port = split_address(listen, "listen")
        self.upstream = upstream
        self.upstream_addr = split_address(upstream, "upstream")
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self.listener: Listener | None = None
        self.old_listeners: list[Listener] = []  # closed, maybe with accepts in flight (awaited at shutdown)
        self.rng = owner.rng
        self.accepted = 0

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    def toxic_list(self) -> list[Toxic]:
        """Upstream toxics first, each stream in the order added (Toxiproxy's GetToxicArray)."""
        return ([t for t in self.toxics.values() if t.stream == "upstream"] +
                [t for t in self.toxics.values() if t.stream != "upstream"])

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxic_list()]}

    def check_addresses(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        """Loopback only, unless the server was started with allow_remote."""
        if self.owner.allow_remote:
            return
        for what, (host, port) in (("listen", listen), ("upstream", upstream)):
            if not is_loopback_host(host):
                raise APIError(f"bad request body: {what} '{host}:{port}' is not a loopback address; the "
                               "embedded proxy binds and connects to 127.0.0.0/8 or ::1 only (start it with "
                               "--allow-remote to allow others)", 400)

    async def start(self) -> None:
        if self.enabled:
            return
        self.check_addresses((self.listen_host, self.listen_port), self.upstream_addr)
        listener = Listener(self)
        try:
            self.listen_port = await listener.start(self.listen_host, self.listen_port)
        except OSError as exc:
            listener.close()
            raise APIError(f"listen tcp {self.listen}: bind: {exc.strerror or exc} (proxy {self.name!r}: choose "
                           f"another listen address, or port 0 for any free port)", 500) from None
        self.listener = listener
        self.enabled = True

    def stop(self) -> None:
        """Close the listener (clients now get connection refused) and every open connection."""
        self.enabled = False
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
            self.old_listeners = [x for x in self.old_listeners if x.accepting] + [listener]
        for link in list(self.links):
            link.close()

    # --- toxics, reaching every open connection -------------------------------------------------------
    def add_toxic(self, toxic: Toxic) -> None:
        self.toxics[toxic.name] = toxic
        for link in list(self.links):
            link.chain(toxic.stream).add(toxic, live=True)

    def toxic_updated(self, toxic: Toxic) -> None:
        for link in list(self.links):
            link.chain(toxic.stream).update(toxic)

    def remove_toxic(self, toxic: Toxic) -> None:
        del self.toxics[toxic.name]
        for link in list(self.links):
            link.chain(toxic.stream).remove(toxic)
