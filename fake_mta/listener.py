"""The listening socket of a fake server (an MTA or a vendor), which go_dark refuse closes and reopens.

The port is bound once and stays the server's while it runs: closed, the socket stays bound but not
listening (`reserve`), so clients get connection refused and nothing else can take the port; reopened,
it listens on that same port. Listening happens synchronously (the kernel queues connections at once);
asyncio starts accepting them, through the server's protocol factory, on its next turn. Each open and
close is recorded as `mta.listener.opened` / `mta.listener.closed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable

from maildrill.fake_mta.recording import Recorder

from maildrill.polling import poll_until_async
from maildrill.vocabulary import EventKind


class Listener:
    """`label` names the server in errors ("fake MTA 'mx1'"); `nodelay` sets TCP_NODELAY on the listening
    socket (accepted connections inherit it); `recorder()` is the server's recorder at the time."""

    def __init__(self, label: str, host: str, port: int, factory: Callable[[], asyncio.BaseProtocol],
                 recorder: Callable[[], Recorder], *, reuse_port: bool = False, nodelay: bool = False) -> None:
        self.label = label
        self.host = host
        self.port = port
        self.factory = factory
        self.recorder = recorder
        self.reuse_port = reuse_port
        self.nodelay = nodelay
        self.running = False  # between start and stop: a closed listener keeps its port reserved
        self._server: asyncio.Server | None = None
        self._listening_sock: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None
        self._reserved: socket.socket | None = None

    @property
    def listening(self) -> bool:
        return self._listening_sock is not None

    async def start(self, *, refusing: bool) -> None:
        """Listen, or (go_dark refuse) only bind; raises OSError (errno EADDRINUSE: saying so) on a taken port."""
        self.running = True
        if refusing:
            self._reserve()  # bound, not listening: connections are refused, the port stays ours
            self._record(EventKind.MTA_LISTENER_CLOSED, "go_dark refuse")
        else:
            self.open("started")
        if self._serving is not None:
            await self._serving

    async def stop(self, close_connections: Callable[[], None], no_connections: Callable[[], bool]) -> None:
        """Close the listener, release the port, close the open connections and wait (at most 5 s) until
        their transports are gone, then until the server has closed."""
        self.running = False
        if self._serving is not None and not self._serving.done():
            await self._serving
        server = self._server
        self.close("stopped")
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        close_connections()
        with contextlib.suppress(TimeoutError):  # transports report connection_lost on a later loop turn
            await poll_until_async(no_connections, 5.0, what="connections to close", interval_s=0.01)
        if server is not None:
            await server.wait_closed()

    def open(self, reason: str) -> None:
        """Listen synchronously (so connections queue at once); asyncio starts accepting on its next turn."""
        sock = self._reserved or self._socket()
        self._reserved = None
        if self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
        sock.listen(1024)  # from here the kernel queues connections; asyncio accepts them once serving
        sock.setblocking(False)
        self._listening_sock = sock
        self._serving = asyncio.get_running_loop().create_task(self._serve(sock))
        self._record(EventKind.MTA_LISTENER_OPENED, reason)

    def close(self, reason: str) -> None:
        """Stop listening (clients now get connection refused); while running, the port stays reserved."""
        if self._listening_sock is None:
            return
        if self._server is not None:
            self._server.close()
        else:
            self._listening_sock.close()  # create_server has not taken it yet
        self._server = None
        self._listening_sock = None
        self._record(EventKind.MTA_LISTENER_CLOSED, reason)
        if self.running:
            self._reserve()

    def _record(self, kind: str, reason: str) -> None:
        self.recorder().record(kind, None, host=self.host, port=self.port, reason=reason)

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"{self.label}: {self.host}:{self.port} is already in use; pick "
                              "another port, or 0 to let the OS choose") from None
            raise
        self.port = sock.getsockname()[1]
        return sock

    def _reserve(self) -> None:
        if self._reserved is None:
            self._reserved = self._socket()

    async def _serve(self, sock: socket.socket) -> None:
        server = await asyncio.get_running_loop().create_server(self.factory, sock=sock, backlog=1024)
        if self._listening_sock is sock:
            self._server = server
        else:  # closed again before it started serving
            server.close()
