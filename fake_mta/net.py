"""Small network helpers shared by the fake MTA, the fault proxy and the run: which hosts are loopback, and a
free port. No maildrill imports, so any layer may use it."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, or a name resolving only to those."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (the caller binds it a moment later; a clash shows as a failed start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def accepts(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
