"""The embedded proxy's control API: Toxiproxy 2.x's HTTP API (api.go) on aiohttp's server.

Every response carries `X-Toxiproxy-Request-Id` (and aiohttp's `Date`), as Toxiproxy's; a browser's request
(`User-Agent: Mozilla/...`) gets Toxiproxy's 403 "User agent not allowed" (fake_mta.apiguard, shared with
the other control APIs); with a token set (the server was started with allow_remote) every request needs
`Authorization: Bearer <token>`. Request bodies may be chunked. Errors are `{"error": ..., "status": N}`
with Toxiproxy's status codes and its message first.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware
from maildrill.fake_mta.apiguard import guards
from maildrill.harness.faults.listener import APIError, Proxy
from maildrill.harness.faults.toxics import Toxic, ToxicError

VERSION = "2.12.0-maildrill"


class Server(Protocol):
    """What the API talks to (the embedded server, so this never imports it): the operations it calls."""

    @property
    def token(self) -> str | None: ...
    @property
    def proxies(self) -> dict[str, Proxy]: ...
    async def reset(self) -> None: ...
    async def populate(self, body: Any) -> tuple[list[Proxy], APIError | None]: ...
    async def create(self, body: Any) -> Proxy: ...
    def get(self, name: str) -> Proxy: ...
    async def update(self, proxy: Proxy, body: Any) -> None: ...
    async def delete(self, name: str) -> None: ...
    def add_toxic(self, proxy: Proxy, body: Any) -> Toxic: ...
    def get_toxic(self, proxy: Proxy, name: str) -> Toxic: ...
    def update_toxic(self, proxy: Proxy, name: str, body: Any) -> Toxic: ...
    def remove_toxic(self, proxy: Proxy, name: str) -> None: ...


OWNER = web.AppKey("owner", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message, "status": status}, status)


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Toxiproxy's hlog.RequestIDHandler: an id per request, in the response's X-Toxiproxy-Request-Id."""
    rid = secrets.token_hex(10)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Toxiproxy-Request-Id"] = rid
        raise
    response.headers["X-Toxiproxy-Request-Id"] = rid
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (APIError, ToxicError) as exc:
        return _error(str(exc), exc.status)
    except web.HTTPMethodNotAllowed:
        return _error(f"method {request.method} not allowed on {request.path}", 405)
    except web.HTTPNotFound:
        return _error(f"404 page not found: {request.path}", 404)


async def _body(request: web.Request) -> Any:
    raw = await request.read()  # Content-Length or chunked
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise APIError(f"bad request body: request body is not valid JSON: {exc}", 400) from None


def _owner(request: web.Request) -> Server:
    return request.app[OWNER]  # type: ignore[return-value]


async def version(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps({"version": VERSION}) + "\n", content_type="application/json",
                        charset="utf-8")


async def reset(request: web.Request) -> web.Response:
    await _owner(request).reset()
    return web.Response(status=204)


async def metrics(request: web.Request) -> web.Response:
    proxies = sorted(_owner(request).proxies.items())
    lines = ["# TYPE maildrill_proxy_open_connections gauge"]
    lines += [f'maildrill_proxy_open_connections{{proxy="{n}"}} {len(p.links)}' for n, p in proxies]
    lines += ["# TYPE maildrill_proxy_accepted_total counter"]
    lines += [f'maildrill_proxy_accepted_total{{proxy="{n}"}} {p.accepted}' for n, p in proxies]
    return web.Response(body=("\n".join(lines) + "\n").encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4"})


async def populate(request: web.Request) -> web.Response:
    try:
        created, failed = await _owner(request).populate(await _body(request))
    except APIError as exc:
        return _json({"error": str(exc), "status": exc.status, "proxies": None}, exc.status)
    proxies = [p.to_json() for p in created] or None  # Go marshals an empty slice it built as null
    if failed is not None:
        return _json({"error": str(failed), "status": failed.status, "proxies": proxies}, failed.status)
    return _json({"proxies": proxies}, 201)


async def proxy_index(request: web.Request) -> web.Response:
    return _json({n: p.to_json() for n, p in _owner(request).proxies.items()})


async def proxy_create(request: web.Request) -> web.Response:
    return _json((await _owner(request).create(await _body(request))).to_json(), 201)


async def proxy_show(request: web.Request) -> web.Response:
    return _json(_owner(request).get(request.match_info["proxy"]).to_json())


async def proxy_update(request: web.Request) -> web.Response:
    owner = _owner(request)
    proxy = owner.get(request.match_info["proxy"])
    await owner.update(proxy, await _body(request))
    return _json(proxy.to_json())


async def proxy_delete(request: web.Request) -> web.Response:
    await _owner(request).delete(request.match_info["proxy"])
    return web.Response(status=204)


async def toxic_index(request: web.Request) -> web.Response:
    proxy = _owner(request).get(request.match_info["proxy"])
    return _json([t.to_json() for t in proxy.toxic_list()])


async def toxic_create(request: web.Request) -> web.Response:
    owner = _owner(request)
    proxy = owner.get(request.match_info["proxy"])
    return _json(owner.add_toxic(proxy, await _body(request)).to_json())


async def toxic_show(request: web.Request) -> web.Response:
    owner = _owner(request)
    proxy = owner.get(request.match_info["proxy"])
    return _json(owner.get_toxic(proxy, request.match_info["toxic"]).to_json())


async def toxic_update(request: web.Request) -> web.Response:
    owner = _owner(request)
    proxy = owner.get(request.match_info["proxy"])
    return _json(owner.update_toxic(proxy, request.match_info["toxic"], await _body(request)).to_json())


async def toxic_delete(request: web.Request) -> web.Response:
    owner = _owner(request)
    owner.remove_toxic(owner.get(request.match_info["proxy"]), request.match_info["toxic"])
    return web.Response(status=204)


def make_app(owner: Server) -> web.Application:
    hint = "printed by `maildrill proxy` at start"
    middlewares: list[Middleware] = [request_id, *guards(owner.token, hint=hint), errors]
    app = web.Application(middlewares=middlewares)
    app[OWNER] = owner
    r = app.router
    r.add_get("/version", version)
    r.add_post("/reset", reset)
    r.add_get("/metrics", metrics)
    r.add_post("/populate", populate)
    r.add_get("/proxies", proxy_index)
    r.add_post("/proxies", proxy_create)
    r.add_get("/proxies/{proxy}", proxy_show)
    for method in ("POST", "PATCH"):
        r.add_route(method, "/proxies/{proxy}", proxy_update)
        r.add_route(method, "/proxies/{proxy}/toxics/{toxic}", toxic_update)
    r.add_delete("/proxies/{proxy}", proxy_delete)
    r.add_get("/proxies/{proxy}/toxics", toxic_index)
    r.add_post("/proxies/{proxy}/toxics", toxic_create)
    r.add_get("/proxies/{proxy}/toxics/{toxic}", toxic_show)
    r.add_delete("/proxies/{proxy}/toxics/{toxic}", toxic_delete)
    return app


async def start_api(owner: Server, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the API on host:port (0: any free port); the runner (`await runner.cleanup()` stops it) and port."""
    runner = web.AppRunner(make_app(owner), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=128)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)
