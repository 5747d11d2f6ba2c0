"""Loopback-only guard: maildrill targets only this machine unless the user says otherwise."""

from __future__ import annotations

from urllib.parse import urlsplit

from maildrill.fake_mta.net import is_loopback
from maildrill.harness.errors import RemoteTargetRefused


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to those (e.g. localhost).

    One definition for the whole project: the fake MTA's (it runs standalone and cannot import harness).
    """
    return is_loopback(host)


def require_loopback(what: str, host: str, *, allow_remote: bool = False) -> None:
    if not allow_remote and not is_loopback_host(host):
        raise RemoteTargetRefused(what, host)


def require_loopback_url(what: str, url: str, *, allow_remote: bool = False) -> None:
    host = urlsplit(url).hostname or ""
    require_loopback(what, host or url, allow_remote=allow_remote)
