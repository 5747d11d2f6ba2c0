"""Reading HTTP/1.1 replies off a raw socket, for the tests that check the fake vendors' bytes and their order
(keep-alive, pipelining) where an HTTP client library would hide them."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    status_line: str
    headers: list[tuple[str, str]]  # in the order sent, names as sent
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def read_reply(s: socket.socket, buf: bytes = b"", what: str = "") -> tuple[Reply, bytes]:
    """The next reply on `s` (its body by Content-Length, none without one) and what followed it, reading on
    from `buf`; AssertionError, naming `what`, if the connection closes first."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"{what}: connection closed before a reply's headers: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k, v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk, f"{what}: connection closed inside a reply's body"
        rest += chunk
    return Reply(lines[0], headers, rest[:length]), rest[length:]
