"""The data plane: one client connection and its upstream connection (`Link`), and the two protocols.

Each side's protocol feeds the chain whose source it is (client → `up`, server → `down`, see chain.py) and
tells the chain whose destination it is when its write buffer fills or drains (flow control: the source
stops reading). A side's EOF or loss ends the chain it feeds; when both chains have ended the link is gone.
As Toxiproxy (proxy.go), the upstream is dialled per accepted client, a client whose upstream cannot be
reached is closed, and when a `reset_peer` toxic exists as the connection opens both sockets linger 0,
so their closes are resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Mapping
from typing import Protocol, cast

from maildrill.harness.faults.chain import Chain
from maildrill.harness.faults.toxics import Toxic


# What the data plane talks to, so it never imports the listener or the server that own it:
class Owner(Protocol):
    """The proxy server: its count of live transports and the upstream connects it awaits at shutdown."""

    transports: int

    @property
    def cancelled(self) -> set[asyncio.Task[None]]: ...


class Proxy(Protocol):
    """The proxy a connection belongs to (listener's `Proxy`)."""

    accepted: int

    @property
    def owner(self) -> Owner: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def links(self) -> set[Link]: ...
    @property
    def toxics(self) -> Mapping[str, Toxic]: ...
    @property
    def upstream_addr(self) -> tuple[str, int]: ...


class Listener(Protocol):
    """The listener that accepted a client (listener's `Listener`): open, or closing as it accepted."""

    @property
    def proxy(self) -> Proxy: ...
    @property
    def open(self) -> bool: ...


HIGH_WATER = 256 * 1024


def _linger0(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Link:
    """One proxied connection: the client's transport, the upstream's, and a chain per direction."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.rng = proxy.rng
        self.up = Chain(self, "upstream")  # client -> upstream server
        self.down = Chain(self, "downstream")  # upstream server -> client
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.closed = False
        self.linger0 = False
        self.connecting: asyncio.Task[None] | None = None

    def chain(self, stream: str) -> Chain:
        return self.up if stream == "upstream" else self.down

    def start(self, client: asyncio.Transport) -> None:
        proxy = self.proxy
        proxy.links.add(self)
        proxy.accepted += 1
        self.client = client
        self.up.src = self.down.dst = client
        client.set_write_buffer_limits(HIGH_WATER)
        for toxic in proxy.toxics.values():  # the toxics there now, each with fresh state
            self.chain(toxic.stream).add(toxic, live=False)
            if toxic.type == "reset_peer":
                self.linger0 = True
        if self.linger0:
            _linger0(client)
        self.down.refresh()
        self.up.flow()  # not reading the client until the upstream is connected
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream_addr
        try:
            transport, _ = await asyncio.get_running_loop().create_connection(lambda: _ServerSide(self), host, port)
        except OSError:
            self.close()  # Toxiproxy closes the client when the upstream cannot be reached
            return
        finally:
            self.connecting = None
        if self.closed:
            transport.close()

    def connected(self, server: asyncio.Transport) -> None:
        self.server = server
        self.down.src = server
        server.set_write_buffer_limits(HIGH_WATER)
        if self.linger0:
            _linger0(server)
        self.up.set_dst(server)

    def chain_done(self, chain: Chain) -> None:
        if self.up.done and self.down.done:
            self._gone()

    def close(self) -> None:
        """Close both sides now (the proxy is disabled, deleted or restarted; the upstream is unreachable)."""
        if self.closed:
            return
        self.closed = True
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
            self.proxy.owner.cancelled.add(self.connecting)
        self.up.finish()
        self.down.finish()
        for t in (self.client, self.server):
            if t is not None and not t.is_closing():
                t.close()
        self._gone()

    def _gone(self) -> None:
        self.closed = True
        self.proxy.links.discard(self)


class ClientSide(asyncio.Protocol):
    """The accepted client connection."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.link: Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        proxy = self.listener.proxy
        proxy.owner.transports += 1
        if not self.listener.open:  # accepted just as the listener closed: it is gone
            cast(asyncio.Transport, transport).abort()
            return
        self.link = Link(proxy)
        self.link.start(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.link.up.feed(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        if self.link is not None:
            self.link.up.end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.proxy.owner.transports -= 1
        if self.link is not None:
            self.link.up.end()

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.down.dst_full = True
            self.link.down.flow()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.down.dst_full = False
            self.link.down.flow()


class _ServerSide(asyncio.Protocol):
    """The connection to the upstream server."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.proxy.owner.transports += 1
        if self.link.closed:
            transport.close()
            return
        self.link.connected(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.link.down.feed(data)

    def eof_received(self) -> bool:
        self.link.down.end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.proxy.owner.transports -= 1
        self.link.down.end()

    def pause_writing(self) -> None:
        self.link.up.dst_full = True
        self.link.up.flow()

    def resume_writing(self) -> None:
        self.link.up.dst_full = False
        self.link.up.flow()
