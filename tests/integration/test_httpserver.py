"""The small JSON HTTP server behind the control APIs, over a real socket."""

from __future__ import annotations

import asyncio
import json
import socket

from maildrill.fake_mta.httpserver import HTTPServer, Request, Response


async def _echo(req: Request) -> Response:
    if req.path == "/boom":
        raise RuntimeError("handler bug")
    try:
        body = req.json()
    except ValueError as exc:
        return Response(400, {"error": str(exc)})
    return Response(200, {"method": req.method, "path": req.path, "query": req.query, "body": body})


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _body(resp: bytes) -> tuple[int, object]:
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_json_round_trip_keep_alive_and_errors():
    async def scenario():
        async with HTTPServer(_echo) as srv:
            assert srv.port > 0
            payload = b'{"a": 1}'
            two = (
                b"POST /x%20y?q=1 HTTP/1.1\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
                + b"GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            resp = await asyncio.to_thread(_exchange, srv.port, two)
            first, second = resp.split(b"HTTP/1.1 ")[1:]
            assert _body(b"HTTP/1.1 " + first) == (
                200,
                {"method": "POST", "path": "/x y", "query": {"q": ["1"]}, "body": {"a": 1}},
            )
            assert _body(b"HTTP/1.1 " + second) == (
                500,
                {"error": "internal error: RuntimeError: handler bug", "status": 500},
            )
            bad = await asyncio.to_thread(
                _exchange, srv.port, b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}"
            )
            status, body = _body(bad)
            assert status == 400
            assert body["error"].startswith("request body is not valid JSON")

    asyncio.run(scenario())
