"""The control-API guards on a real aiohttp server: browsers refused as Toxiproxy does, bearer tokens checked."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from maildrill.fake_mta.apiguard import guards, is_browser, new_token


async def _serve(token: str | None) -> tuple[web.AppRunner, str]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=guards(token, hint="from the test"))
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _get(url: str, headers: dict[str, str]) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def test_a_browser_user_agent_is_refused_like_toxiproxy() -> None:
    async def go() -> list[tuple[int, str, str]]:
        runner, url = await _serve(None)
        try:
            return [await _get(url + "/hello", {"User-Agent": ua}) for ua in
                    ("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "curl/8.5.0", "python-requests/2.31")]
        finally:
            await runner.cleanup()

    assert asyncio.run(go()) == [(403, "text/plain; charset=utf-8", "User agent not allowed\n"),
                                 (200, "application/json; charset=utf-8", '{"ok": true}'),
                                 (200, "application/json; charset=utf-8", '{"ok": true}')]


def test_a_token_is_required_when_set() -> None:
    token = new_token()

    async def go() -> list[int]:
        runner, url = await _serve(token)
        try:
            out = []
            for auth in (None, "Bearer wrong", f"Bearer {token}"):
                out.append((await _get(url + "/hello", {"Authorization": auth} if auth else {}))[0])
            return out
        finally:
            await runner.cleanup()

    assert asyncio.run(go()) == [401, 401, 200]
    assert len(token) == 32


@pytest.mark.parametrize(("ua", "browser"), [("Mozilla/4.0", True), ("mozilla/5.0", False), ("", False),
                                             (None, False), ("Go-http-client/1.1", False)])
def test_is_browser_is_toxiproxys_prefix_test(ua: str | None, browser: bool) -> None:
    assert is_browser(ua) is browser
