"""The embedded fault proxy: an asyncio TCP proxy that serves Toxiproxy 2.x's HTTP API.

Same paths, JSON shapes and status codes as Toxiproxy (api.go), so toxiproxy-python, toxiproxy-cli and our
own adapter drive it exactly as they drive the real server. With no toxic on a connection, bytes are relayed
straight from one transport to the other in the protocol callbacks (no task, no queue): the fast path.
A toxic moves that direction of every affected connection onto a pump task that applies the toxics in the
order they were added; toxic changes reach open connections at their next chunk.

Deliberate differences from Toxiproxy (see docs/fault-proxy.md): unknown toxic attributes and non-integer
values are rejected (Toxiproxy ignores a misspelt attribute silently); error texts start with Toxiproxy's
and add what to do; `/metrics` reports open connections per proxy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any

from maildrill.fake_mta.httpserver import HTTPServer, Request, Response
from maildrill.fake_mta.net import is_loopback
from maildrill.harness.faults.toxics import Toxic, ToxicError, parse_toxic, update_toxic

VERSION = "2.12.0-maildrill"
HIGH_WATER = 256 * 1024


class APIError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _split(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = str(addr).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise APIError(f"bad request body: {what} {addr!r} must be HOST:PORT (e.g. 127.0.0.1:0)", 400)
    return host.strip("[]") or "127.0.0.1", int(port)


# --- one direction of one connection ---------------------------------------------------------------
class _Pipe:
    """Bytes from `src` to `dst` (both transports) through the toxics of one stream."""

    def __init__(self, link: _Link, stream: str) -> None:
        self.link = link
        self.stream = stream
        self.dst: asyncio.Transport | None = None
        self.src: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # made on first use: most connections never need a pump
        self.sent = 0  # bytes through (limit_data)
        self.eof = False
        self.reset_armed = False

    @property
    def wake(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def toxics(self) -> list[Toxic]:
        proxy = self.link.proxy
        return [t for t in proxy.toxics.values() if t.stream == self.stream and self.link.affected(t)]

    def feed(self, data: bytes) -> None:
        if self.task is None and not self.queue and self.dst is not None and not self.link.proxy.toxics:
            self.dst.write(data)  # the fast path
            return
        self.queue.append((time.monotonic(), data))
        self.kick()

    def end(self) -> None:
        self.eof = True
        self.kick()

    def kick(self) -> None:
        if self.task is None and not self.queue and not self.eof and not self.link.proxy.toxics:
            return  # nothing to do: the fast path carries on
        self.wake.set()
        if self.task is None and not self.link.closed:
            self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        rng = self.link.proxy.rng
        try:
            while not self.link.closed:
                if not self.queue:
                    if self.eof:
                        await self._close_after_slow_close()
                        return
                    if self.dst is not None and not self.toxics():
                        return  # back to the fast path
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                if self.dst is None:  # upstream not connected yet
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                arrived, data = self.queue[0]
                toxics = self.toxics()
                if any(t.type in ("timeout", "reset_peer") for t in toxics):
                    self.queue.popleft()  # both swallow data
                    reset = next((t for t in toxics if t.type == "reset_peer"), None)
                    if reset is not None and not self.reset_armed:
                        self.reset_armed = True
                        name, toxics_now = reset.name, self.link.proxy.toxics

                        def fire(name: str = name, toxics_now: dict[str, Toxic] = toxics_now) -> None:
                            if name in toxics_now:  # still there: removing the toxic first disarms it
                                self.link.reset()

                        self.link.later(reset.attributes["timeout"] / 1000.0, fire)
                    continue
                for t in toxics:
                    if t.type == "latency":
                        await asyncio.sleep(max(0.0, arrived + t.latency_s(rng) - time.monotonic()))
                    elif t.type == "bandwidth" and t.attributes["rate"] > 0:
                        await asyncio.sleep(len(data) / (t.attributes["rate"] * 1000.0))
                self.queue.popleft()
                limit = next((t for t in toxics if t.type == "limit_data"), None)
                if limit is not None:
                    room = max(0, limit.attributes["bytes"] - self.sent)
                    data = data[:room]
                slicer = next((t for t in toxics if t.type == "slicer"), None)
                pieces = slicer.slices(data, rng) if slicer is not None else [data]
                for i, piece in enumerate(pieces):
                    if self.link.closed:
                        return
                    self.dst.write(piece)
                    self.sent += len(piece)
                    if slicer is not None and i < len(pieces) - 1 and slicer.attributes["delay"] > 0:
                        await asyncio.sleep(slicer.attributes["delay"] / 1e6)
                if limit is not None and self.sent >= limit.attributes["bytes"]:
                    self.link.close()
                    return
        except (ConnectionError, RuntimeError):
            self.link.close()
        finally:
            self.task = None

    async def _close_after_slow_close(self) -> None:
        slow = next((t for t in self.toxics() if t.type == "slow_close"), None)
        if slow is not None and slow.attributes["delay"] > 0:
            await asyncio.sleep(slow.attributes["delay"] / 1000.0)
        self.link.close()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: _Proxy) -> None:
        self.proxy = proxy
        self.up = _Pipe(self, "upstream")  # client -> upstream server
        self.down = _Pipe(self, "downstream")  # upstream server -> client
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.closed = False
        self.dice: dict[str, bool] = {}
        self.timers: list[asyncio.TimerHandle] = []
        self.connecting: asyncio.Task[None] | None = None

    def affected(self, toxic: Toxic) -> bool:
        """Toxicity is drawn once per connection and toxic (seeded)."""
        hit = self.dice.get(toxic.name)
        if hit is None:
            hit = self.dice[toxic.name] = toxic.toxicity >= 1.0 or self.proxy.rng.random() < toxic.toxicity
        return hit

    def toxic_added(self, toxic: Toxic) -> None:
        self.dice.pop(toxic.name, None)
        if toxic.type == "timeout" and toxic.attributes["timeout"] > 0 and self.affected(toxic):
            self.later(toxic.attributes["timeout"] / 1000.0, self.close)
        self.up.kick()
        self.down.kick()

    def toxic_removed(self, toxic: Toxic) -> None:
        if toxic.type == "timeout" and self.dice.get(toxic.name):
            self.close()  # as Toxiproxy: removing a timeout toxic closes the connections it held
            return
        self.dice.pop(toxic.name, None)
        self.up.kick()
        self.down.kick()

    def later(self, delay_s: float, fn: Any) -> None:
        self.timers.append(asyncio.get_running_loop().call_later(delay_s, fn))

    def reset(self) -> None:
        for t in (self.client, self.server):
            if t is not None and not t.is_closing():
                sock = t.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                t.abort()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for h in self.timers:
            h.cancel()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
            self.proxy.owner.cancelled.add(self.connecting)
        for t in (self.client, self.server):
            if t is not None and not t.is_closing():
                t.close()
        for p in (self.up, self.down):
            if p._wake is not None:
                p._wake.set()
        self.proxy.links.discard(self)


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: _Proxy) -> None:
        self.link = _Link(proxy)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        link = self.link
        link.proxy.owner.transports += 1
        link.client = transport  # type: ignore[assignment]
        link.up.src = link.down.dst = transport  # type: ignore[assignment]
        proxy = link.proxy
        if not proxy.enabled:  # accepted just as the proxy was disabled: it is gone
            transport.abort()
            link.closed = True
            return
        proxy.links.add(link)
        proxy.accepted += 1
        transport.pause_reading()  # type: ignore[attr-defined]
        for t in proxy.toxics.values():
            if t.type == "timeout" and t.attributes["timeout"] > 0 and link.affected(t):
                link.later(t.attributes["timeout"] / 1000.0, link.close)
        link.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        link = self.link
        host, port = link.proxy.upstream_addr
        try:
            transport, _ = await asyncio.get_running_loop().create_connection(lambda: _ServerSide(link), host, port)
        except OSError:
            link.close()  # Toxiproxy closes the client when the upstream cannot be reached
            return
        finally:
            link.connecting = None
        if link.closed:
            transport.close()
            return
        link.client.resume_reading()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.link.up.feed(data)

    def eof_received(self) -> bool:
        self.link.up.end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.proxy.owner.transports -= 1
        self.link.close()

    def pause_writing(self) -> None:
        if self.link.server is not None:
            self.link.server.pause_reading()

    def resume_writing(self) -> None:
        if self.link.server is not None and not self.link.server.is_closing():
            self.link.server.resume_reading()


class _ServerSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        link = self.link
        link.proxy.owner.transports += 1
        link.server = transport  # type: ignore[assignment]
        link.up.dst = link.down.src = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(HIGH_WATER)  # type: ignore[attr-defined]
        link.client.set_write_buffer_limits(HIGH_WATER)  # type: ignore[union-attr]
        if link.up.queue:
            link.up.kick()

    def data_received(self, data: bytes) -> None:
        self.link.down.feed(data)

    def eof_received(self) -> bool:
        self.link.down.end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.proxy.owner.transports -= 1
        if self.link.down.task is None or exc is not None:
            self.link.close()
        else:
            self.link.down.end()

    def pause_writing(self) -> None:
        if self.link.client is not None:
            self.link.client.pause_reading()

    def resume_writing(self) -> None:
        if self.link.client is not None and not self.link.client.is_closing():
            self.link.client.resume_reading()


# --- a proxy ---------------------------------------------------------------------------------------
class _Proxy:
    def __init__(self, owner: EmbeddedToxiproxy, name: str, listen: str, upstream: str) -> None:
        self.owner = owner
        self.name = name
        self.listen_host, self.listen_port = _split(listen, "listen")
        self.upstream = upstream
        self.upstream_addr = _split(upstream, "upstream")
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self.links: set[_Link] = set()
        self.sock: socket.socket | None = None
        self.server: asyncio.AbstractServer | None = None
        self.accepting: set[asyncio.Task[Any]] = set()
        self.rng = owner.rng
        self.accepted = 0

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxics.values()]}

    async def start(self) -> None:
        if self.enabled:
            return
        if not self.owner.allow_remote and not is_loopback(self.listen_host):
            raise APIError(f"bad request body: listen {self.listen!r} is not a loopback address; the embedded proxy "
                           f"binds 127.0.0.0/8 or ::1 only (start it with --allow-remote to bind others)", 400)
        try:
            family = socket.getaddrinfo(self.listen_host, self.listen_port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.create_server((self.listen_host, self.listen_port), family=family, backlog=1024)
        except OSError as exc:
            raise APIError(f"listen tcp {self.listen}: bind: {exc.strerror or exc} (proxy {self.name!r}: choose "
                           f"another listen address, or port 0 for any free port)", 500) from None
        sock.setblocking(False)
        self.listen_port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        if hasattr(loop, "_make_socket_transport"):  # asyncio's loop: our own accept loop (see _accept_ready)
            self.sock = sock
            loop.add_reader(sock.fileno(), self._accept_ready)
        else:  # uvloop: its Server accepts in C and closes cleanly mid-accept
            self.server = await loop.create_server(lambda: _ClientSide(self), sock=sock, backlog=1024)
        self.enabled = True

    def _accept_ready(self) -> None:
        """Accept what is waiting. Our own accept loop rather than asyncio.Server: closing a Server while it
        accepts trips an assertion in CPython 3.11's Server._attach and leaks the half-made transport."""
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
            make = getattr(loop, "_make_socket_transport", None)
            if make is not None:  # asyncio's own loop: make the transport at once, as its Server does
                try:
                    make(conn, _ClientSide(self), extra={"peername": conn.getpeername()})
                except OSError:
                    conn.close()
                continue
            task = loop.create_task(loop.connect_accepted_socket(lambda: _ClientSide(self), conn))
            self.accepting.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self.accepting.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a client that left before its transport was made needs nothing more

    async def stop(self) -> None:
        """Close the listener (clients now get connection refused) and every open connection."""
        self.enabled = False
        sock, self.sock = self.sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for link in list(self.links):
            link.close()


class EmbeddedToxiproxy:
    """`async with EmbeddedToxiproxy() as tp:` serves Toxiproxy's API at `tp.url` until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None, *,
                 allow_remote: bool = False) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"{host!r} is not a loopback address; pass allow_remote=True to bind it")
        self.host = host
        self.allow_remote = allow_remote
        self.rng = random.Random(seed)
        self.proxies: dict[str, _Proxy] = {}
        self.http = HTTPServer(self.handle, host, port)
        self.cancelled: set[asyncio.Task[None]] = set()  # upstream connects cut short, awaited at shutdown
        self.transports = 0  # proxied transports not yet fully closed (connection_lost not called)

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> EmbeddedToxiproxy:
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in list(self.proxies.values()):
            await p.stop()
        accepting = [t for p in self.proxies.values() for t in p.accepting]
        await asyncio.gather(*accepting, return_exceptions=True)
        for p in list(self.proxies.values()):
            await p.stop()  # what was mid-accept
        self.proxies.clear()
        await self.http.stop()
        pending, self.cancelled = self.cancelled, set()
        await asyncio.gather(*pending, return_exceptions=True)
        deadline = time.monotonic() + 5.0
        while self.transports > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # closing transports finish on the next loop iterations

    def open_connections(self, proxy: str | None = None) -> int:
        return sum(len(p.links) for n, p in self.proxies.items() if proxy is None or n == proxy)

    # --- operations (the API and the `populate` config) -------------------------------------------
    async def create(self, body: Any) -> _Proxy:
        if not isinstance(body, dict):
            raise APIError("bad request body: expected a JSON object with name, listen, upstream", 400)
        for key in ("name", "upstream"):
            if not body.get(key):
                raise APIError(f"missing required field: {key}", 400)
        name = str(body["name"])
        if name in self.proxies:
            raise APIError(f"proxy already exists: {name!r} (delete it first, or POST /proxies/{name} to change it)",
                           409)
        proxy = _Proxy(self, name, str(body.get("listen") or "127.0.0.1:0"), str(body["upstream"]))
        if body.get("enabled", True):
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    def get(self, name: str) -> _Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise APIError(f"proxy not found: {name!r}; proxies: {sorted(self.proxies)}", 404)
        return proxy

    async def update(self, proxy: _Proxy, body: Any) -> None:
        if not isinstance(body, dict):
            raise APIError("bad request body: expected a JSON object", 400)
        if "upstream" in body and body["upstream"] != proxy.upstream:
            proxy.upstream_addr = _split(body["upstream"], "upstream")
            proxy.upstream = str(body["upstream"])
        if "listen" in body and body["listen"] != proxy.listen:
            was = proxy.enabled
            await proxy.stop()
            proxy.listen_host, proxy.listen_port = _split(body["listen"], "listen")
            if was:
                await proxy.start()
        enabled = body.get("enabled", proxy.enabled)
        if enabled and not proxy.enabled:
            await proxy.start()
        elif not enabled and proxy.enabled:
            await proxy.stop()

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            for toxic in list(proxy.toxics.values()):
                self.remove_toxic(proxy, toxic.name)
            await proxy.start()

    def add_toxic(self, proxy: _Proxy, body: Any) -> Toxic:
        toxic = parse_toxic(body, existing=set(proxy.toxics))
        proxy.toxics[toxic.name] = toxic
        for link in list(proxy.links):
            link.toxic_added(toxic)
        return toxic

    def remove_toxic(self, proxy: _Proxy, name: str) -> None:
        toxic = proxy.toxics.pop(name, None)
        if toxic is None:
            raise APIError(f"toxic not found: {name!r} on proxy {proxy.name!r}; toxics: {sorted(proxy.toxics)}", 404)
        for link in list(proxy.links):
            link.toxic_removed(toxic)

    # --- HTTP ----------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        try:
            return await self._route(req)
        except APIError as exc:
            return Response(exc.status, {"error": str(exc), "status": exc.status})
        except ToxicError as exc:
            return Response(exc.status, {"error": str(exc), "status": exc.status})
        except ValueError as exc:  # a body that is not JSON
            return Response(400, {"error": f"bad request body: {exc}", "status": 400})

    async def _route(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        m = req.method
        if parts == ["version"] and m == "GET":
            return Response(200, {"version": VERSION})
        if parts == ["reset"] and m == "POST":
            await self.reset()
            return Response(204)
        if parts == ["metrics"] and m == "GET":
            lines = ["# TYPE maildrill_proxy_open_connections gauge"]
            lines += [f'maildrill_proxy_open_connections{{proxy="{n}"}} {len(p.links)}' for n, p in
                      sorted(self.proxies.items())]
            lines += ["# TYPE maildrill_proxy_accepted_total counter"]
            lines += [f'maildrill_proxy_accepted_total{{proxy="{n}"}} {p.accepted}' for n, p in
                      sorted(self.proxies.items())]
            return Response(200, "\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
        if parts == ["populate"] and m == "POST":
            return await self._populate(req.json())
        if parts == ["proxies"]:
            if m == "GET":
                return Response(200, {n: p.to_json() for n, p in self.proxies.items()})
            if m == "POST":
                return Response(201, (await self.create(req.json())).to_json())
        if len(parts) == 2 and parts[0] == "proxies":
            proxy = self.get(parts[1])
            if m == "GET":
                return Response(200, proxy.to_json())
            if m in ("POST", "PATCH"):
                await self.update(proxy, req.json())
                return Response(200, proxy.to_json())
            if m == "DELETE":
                await self.delete(proxy.name)
                return Response(204)
        if len(parts) == 3 and parts[0] == "proxies" and parts[2] == "toxics":
            proxy = self.get(parts[1])
            if m == "GET":
                return Response(200, [t.to_json() for t in proxy.toxics.values()])
            if m == "POST":
                return Response(200, self.add_toxic(proxy, req.json()).to_json())
        if len(parts) == 4 and parts[0] == "proxies" and parts[2] == "toxics":
            proxy = self.get(parts[1])
            toxic = proxy.toxics.get(parts[3])
            if toxic is None:
                raise APIError(f"toxic not found: {parts[3]!r} on proxy {proxy.name!r}; toxics: "
                               f"{sorted(proxy.toxics)}", 404)
            if m == "GET":
                return Response(200, toxic.to_json())
            if m in ("POST", "PATCH"):
                update_toxic(toxic, req.json())
                for link in list(proxy.links):
                    link.up.kick()
                    link.down.kick()
                return Response(200, toxic.to_json())
            if m == "DELETE":
                self.remove_toxic(proxy, toxic.name)
                return Response(204)
        if parts and parts[0] in ("proxies", "version", "reset", "populate", "metrics"):
            return Response(405, {"error": f"method {m} not allowed on {req.path}", "status": 405})
        return Response(404, {"error": f"404 page not found: {req.path}", "status": 404})

    async def _populate(self, body: Any) -> Response:
        if not isinstance(body, list):
            raise APIError("bad request body: expected a JSON list of proxies", 400)
        out = []
        for item in body:
            if not isinstance(item, dict) or not item.get("name"):
                raise APIError(f"missing required field: name (in {item!r})", 400)
            existing = self.proxies.get(str(item["name"]))
            if existing is not None:
                same = (existing.upstream == item.get("upstream") and
                        item.get("listen") in (None, existing.listen))
                if same:
                    out.append(existing)
                    continue
                await self.delete(existing.name)
            out.append(await self.create(item))
        return Response(201, {"proxies": [p.to_json() for p in out]})


class EmbeddedToxiproxyThread:
    """The embedded proxy on its own event loop in a daemon thread, for synchronous code and tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None, *,
                 allow_remote: bool = False, uvloop: bool = False) -> None:
        if uvloop:
            import uvloop as _uvloop

            self.loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.server = EmbeddedToxiproxy(host, port, seed, allow_remote=allow_remote)
        self._thread = threading.Thread(target=self.loop.run_forever, name="maildrill-proxy", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def open_connections(self, proxy: str | None = None) -> int:
        async def count() -> int:
            return self.server.open_connections(proxy)

        return int(self.run(count()))

    def __enter__(self) -> EmbeddedToxiproxyThread:
        self._thread.start()
        try:
            self.run(self.server.__aenter__())
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.server.__aexit__(None, None, None))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
