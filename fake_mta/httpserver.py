"""A minimal asyncio HTTP/1.1 server for small JSON control APIs (fleet control, embedded Toxiproxy).

Enough HTTP for API clients (requests, curl, toxiproxy-cli): keep-alive, Content-Length bodies,
JSON in and out. Not a general web server: no chunked request bodies, no TLS, bodies <= 1 MiB.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 1 << 20


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, no query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    peer: str = ""

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a readable message when it is not."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ValueError(f"request body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            payload, ctype = self.body, self.content_type or "application/octet-stream"
        elif isinstance(self.body, str):
            payload, ctype = self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        elif self.body is None and self.status in (204, 304):
            payload, ctype = b"", None
        else:
            payload = (json.dumps(self.body) + "\n").encode()
            ctype = self.content_type or "application/json"
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(payload)}")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


Handler = Callable[[Request], Awaitable[Response]]


class HTTPServer:
    """`async with HTTPServer(handler, host, port) as s:` serves until the block ends; `s.port` is bound."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False):
        self.handler = handler
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_port=self.reuse_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = writer.get_extra_info("peername")
        peer_s = peer[0] if isinstance(peer, tuple) else ""
        try:
            while True:
                request = await self._read_request(reader, writer, peer_s)
                if request is None:
                    break
                try:
                    response = await self.handler(request)
                except Exception as exc:  # a handler bug must not take the API down
                    response = Response(500, {"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500})
                keep = request.headers.get("connection", "").lower() != "close"
                if not keep:
                    response.headers.setdefault("Connection", "close")
                writer.write(response.encode())
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(Response(431, {"error": "request headers too large", "status": 431}).encode())
            return None
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(Response(400, {"error": f"bad request line {lines[0][:80]!r}", "status": 400}).encode())
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            writer.write(Response(413, {"error": "request body too large", "status": 413}).encode())
            return None
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        return Request(method.upper(), unquote(parts.path), parse_qs(parts.query), headers, body, peer)
