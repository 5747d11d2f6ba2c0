"""The embedded fault proxy: an asyncio TCP proxy that serves Toxiproxy 2.x's HTTP API.

Same paths, JSON shapes, status codes and toxic semantics as Toxiproxy (api.go, proxy.go, link.go,
toxics/*.go), so toxiproxy-python, toxiproxy-cli and our own adapter drive it exactly as they drive the
real server. The parts: `toxics/` (one module per toxic), `chain.py` (one direction's toxic chain),
`dataplane.py` (a proxied connection), `listener.py` (a proxy and its listener), `api.py` (the HTTP API on
aiohttp); here, the collection of proxies and the operations the API and `populate` configs call.

Deliberate differences from Toxiproxy are listed in docs/fault-proxy.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from typing import Any

from maildrill.fake_mta.apiguard import new_token
from maildrill.harness.faults.api import VERSION, start_api
from maildrill.harness.faults.listener import APIError, Proxy, split_address
from maildrill.harness.faults.toxics import Toxic, parse_toxic, update_toxic
from maildrill.harness.netcheck import is_loopback_host

from maildrill.polling import poll_until_async

__all__ = ["VERSION", "APIError", "EmbeddedToxiproxy", "EmbeddedToxiproxyThread"]

PROXY_FIELDS = {"name": str, "listen": str, "upstream": str, "enabled": bool}


def _typed(body: dict[str, Any], where: str = "") -> None:
    """Toxiproxy decodes into Go strings and a bool: `name: 5` or `enabled: "yes"` is a 400."""
    for key, kind in PROXY_FIELDS.items():
        if key in body and body[key] is not None and not isinstance(body[key], kind):
            raise APIError(f"bad request body: {key}{where} must be a {'boolean' if kind is bool else 'string'}, "
                           f"got {body[key]!r}", 400)


class EmbeddedToxiproxy:
    """`async with EmbeddedToxiproxy() as tp:` serves Toxiproxy's API at `tp.url` until the block ends.

    Loopback only unless `allow_remote`; then the API requires `Authorization: Bearer <tp.token>` (the
    given `token`, or one generated here)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None, *,
                 allow_remote: bool = False, token: str | None = None) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(f"{host!r} is not a loopback address; pass allow_remote=True to bind it")
        self.host = host
        self.allow_remote = allow_remote
        self.token = token if token is not None or not allow_remote else new_token()
        self.rng = random.Random(seed)
        self.proxies: dict[str, Proxy] = {}
        self._port = port
        self._runner: Any = None
        self.cancelled: set[asyncio.Task[None]] = set()  # upstream connects cut short, awaited at shutdown
        self.transports = 0  # proxied transports not yet fully closed (connection_lost not called)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> EmbeddedToxiproxy:
        self._runner, self._port = await start_api(self, self.host, self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in list(self.proxies.values()):
            p.stop()
        accepting = [t for p in self.proxies.values() for x in p.old_listeners for t in x.accepting]
        await asyncio.gather(*accepting, return_exceptions=True)
        for p in list(self.proxies.values()):
            p.stop()  # what was mid-accept
        self.proxies.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        pending, self.cancelled = self.cancelled, set()
        await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # closing transports finish on the next loop iterations
            await poll_until_async(lambda: self.transports <= 0, 5.0, what="transports to close", interval_s=0.005)

    def open_connections(self, proxy: str | None = None) -> int:
        return sum(len(p.links) for n, p in self.proxies.items() if proxy is None or n == proxy)

    # --- operations (the API and the `populate` config) -------------------------------------------
    def check_new(self, body: Any, where: str = "") -> None:
        if not isinstance(body, dict):
            raise APIError(f"bad request body: expected a JSON object with name, listen, upstream{where}", 400)
        _typed(body, where)
        for key in ("name", "upstream"):
            if not body.get(key):
                raise APIError(f"missing required field: {key}{where}", 400)

    async def create(self, body: Any) -> Proxy:
        self.check_new(body)
        name = body["name"]
        if name in self.proxies:
            raise APIError(f"proxy already exists: {name!r} (delete it first, or PATCH /proxies/{name} to change "
                           "it)", 409)
        proxy = Proxy(self, name, body.get("listen") or "127.0.0.1:0", body["upstream"])
        if body.get("enabled", True) is not False:
            await proxy.start()
        else:
            proxy.check_addresses((proxy.listen_host, proxy.listen_port), proxy.upstream_addr)
        self.proxies[name] = proxy
        return proxy

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise APIError(f"proxy not found: {name!r}; proxies: {sorted(self.proxies)}", 404)
        return proxy

    async def update(self, proxy: Proxy, body: Any) -> None:
        """As Toxiproxy's Proxy.Update: a new listen or upstream restarts the proxy (open connections are
        closed), then `enabled` starts or stops it."""
        if not isinstance(body, dict):
            raise APIError("bad request body: expected a JSON object", 400)
        _typed(body)
        listen = body.get("listen") or proxy.listen
        upstream = body.get("upstream") or proxy.upstream
        enabled = body.get("enabled", proxy.enabled)
        enabled = proxy.enabled if enabled is None else enabled
        listen_addr, upstream_addr = split_address(listen, "listen"), split_address(upstream, "upstream")
        if listen != proxy.listen or upstream != proxy.upstream:
            proxy.check_addresses(listen_addr, upstream_addr)
            proxy.stop()
            proxy.listen_host, proxy.listen_port = listen_addr
            proxy.upstream, proxy.upstream_addr = upstream, upstream_addr
        if enabled and not proxy.enabled:
            await proxy.start()
        elif not enabled and proxy.enabled:
            proxy.stop()

    async def delete(self, name: str) -> None:
        self.get(name).stop()
        del self.proxies[name]

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()
            for toxic in list(proxy.toxics.values()):
                proxy.remove_toxic(toxic)

    async def populate(self, body: Any) -> tuple[list[Proxy], APIError | None]:
        """Toxiproxy's PopulateJson: the whole list is checked before anything is created; then each proxy is
        added, or replaced when its listen or upstream differs; the first failure stops there."""
        if not isinstance(body, list):
            raise APIError("bad request body: expected a JSON list of proxies", 400)
        for i, item in enumerate(body):
            self.check_new(item, f" at proxy {i + 1}")
        out: list[Proxy] = []
        for item in body:
            try:
                existing = self.proxies.get(item["name"])
                if existing is not None:
                    if existing.upstream == item["upstream"] and item.get("listen") in (None, "", existing.listen):
                        out.append(existing)
                        continue
                    await self.delete(existing.name)
                out.append(await self.create(item))
            except APIError as exc:
                return out, exc
        return out, None

    def add_toxic(self, proxy: Proxy, body: Any) -> Toxic:
        toxic = parse_toxic(body, existing=set(proxy.toxics))
        proxy.add_toxic(toxic)
        return toxic

    def get_toxic(self, proxy: Proxy, name: str) -> Toxic:
        toxic = proxy.toxics.get(name)
        if toxic is None:
            raise APIError(f"toxic not found: {name!r} on proxy {proxy.name!r}; toxics: {sorted(proxy.toxics)}", 404)
        return toxic

    def update_toxic(self, proxy: Proxy, name: str, body: Any) -> Toxic:
        toxic = self.get_toxic(proxy, name)
        update_toxic(toxic, body)
        proxy.toxic_updated(toxic)
        return toxic

    def remove_toxic(self, proxy: Proxy, name: str) -> None:
        proxy.remove_toxic(self.get_toxic(proxy, name))


class EmbeddedToxiproxyThread:
    """The embedded proxy on its own event loop in a daemon thread, for synchronous code and tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None, *,
                 allow_remote: bool = False, token: str | None = None, uvloop: bool = False) -> None:
        if uvloop:
            import uvloop as _uvloop

            self.loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.server = EmbeddedToxiproxy(host, port, seed, allow_remote=allow_remote, token=token)
        self._thread = threading.Thread(target=self.loop.run_forever, name="maildrill-proxy", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def token(self) -> str | None:
        return self.server.token

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def open_connections(self, proxy: str | None = None) -> int:
        async def count() -> int:
            return self.server.open_connections(proxy)

        return int(self.run(count()))

    def __enter__(self) -> EmbeddedToxiproxyThread:
        self._thread.start()
        try:
            self.run(self.server.__aenter__())
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.server.__aexit__(None, None, None))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
