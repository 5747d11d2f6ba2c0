"""Loopback-only guard: maildrill targets only this machine unless the user says otherwise."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from harness.errors import RemoteTargetRefused


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to those (e.g. localhost)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def require_loopback(what: str, host: str, *, allow_remote: bool = False) -> None:
    if not allow_remote and not is_loopback_host(host):
        raise RemoteTargetRefused(what, host)


def require_loopback_url(what: str, url: str, *, allow_remote: bool = False) -> None:
    host = urlsplit(url).hostname or ""
    require_loopback(what, host or url, allow_remote=allow_remote)
