"""Guards for maildrill's control APIs (aiohttp middlewares): a browser guard and a bearer-token check.

These APIs (the fleet's control API, the embedded Toxiproxy API, the fake vendors' control) listen on
loopback, where any web page the user opens can reach them with `fetch()`. As Toxiproxy does, a request
whose `User-Agent` starts with `Mozilla/` (every browser sends one) is refused with 403 "User agent not
allowed" before it reaches a handler; command-line clients and SDKs (curl, requests, Go, toxiproxy-cli)
are unaffected. An API exposed beyond loopback (`--allow-remote`) also requires
`Authorization: Bearer <token>`.

    app = web.Application(middlewares=guards(token=None))          # loopback: browser guard only
    app = web.Application(middlewares=guards(token=new_token()))   # remote: token required too
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # names for annotations only (aiohttp's Middleware is a Protocol in newer releases)
    from aiohttp.typedefs import Handler, Middleware

BROWSER_PREFIX = "Mozilla/"


def new_token() -> str:
    """A fresh bearer token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def is_browser(user_agent: str | None) -> bool:
    """Toxiproxy's test: the User-Agent starts with `Mozilla/` (what every browser sends)."""
    return bool(user_agent) and str(user_agent).startswith(BROWSER_PREFIX)


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 `User agent not allowed` (text/plain, as Toxiproxy) for a browser's request."""
    if is_browser(request.headers.get("User-Agent")):
        return web.Response(status=403, text="User agent not allowed\n", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})
    return await handler(request)


def bearer_token(token: str, *, hint: str = "the token printed at start") -> Middleware:
    """A middleware answering 401 (with `WWW-Authenticate: Bearer`) unless `Authorization: Bearer <token>`."""
    want = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, want):
            return web.json_response(
                {"error": f"missing or wrong bearer token: send 'Authorization: Bearer <token>' ({hint})",
                 "status": 401}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


def guards(token: str | None, *, hint: str = "the token printed at start") -> list[Middleware]:
    """The middlewares for a control API: the browser guard, then the token check when `token` is set."""
    out: list[Middleware] = [browser_guard]
    if token is not None:
        out.append(bearer_token(token, hint=hint))
    return out
