"""A real aiohttp webhook receiver on 127.0.0.1 and plain-HTTP sends in each vendor's wire format (the fake
vendors' SDK tests cover the send side; here the sends only have to be accepted)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from maildrill.fake_mta.clock import MonotonicClock
from maildrill.fake_mta.config import VendorSpec
from maildrill.fake_mta.recording import MemoryRecorder
from maildrill.fake_mta.vendors import FakeVendor


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """Records every request; answers `status(hit_number, request)` (default 200)."""

    status: Callable[[int, web.Request], int] = lambda i, r: 200
    hits: list[Hit] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        code = self.status(len(self.hits), request)
        self.hits.append(Hit(request.method, request.path, dict(request.headers), body, code))
        return web.Response(status=code, text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def wait_for(cond: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Wait on a condition with a deadline (the event loop keeps running meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


def make_vendor(api: str, webhooks: dict[str, Any], *, seed: int = 7, behaviors: list | None = None) -> FakeVendor:
    clock = MonotonicClock()
    spec = VendorSpec(name="v", api=api, webhooks=webhooks, behaviors=behaviors or [])
    return FakeVendor(spec, recorder=MemoryRecorder("mta/v", clock), clock=clock, seed=seed)


async def send(session: aiohttp.ClientSession, v: FakeVendor, rcpts: list[str], sender: str = "app@app.test") -> str:
    """One accepted send of a message per recipient (SendGrid, Resend: batched); returns the response text."""
    base = v.base_url
    if v.api == "sendgrid":
        r = await session.post(f"{base}/v3/mail/send", headers={"Authorization": "Bearer SG.k"}, json={
            "personalizations": [{"to": [{"email": a}]} for a in rcpts], "from": {"email": sender},
            "subject": "s", "content": [{"type": "text/plain", "value": "x"}]})
    elif v.api == "ses":
        assert len(rcpts) <= 50
        r = await session.post(f"{base}/v2/email/outbound-emails", headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ses/aws4_request"}, json={
            "FromEmailAddress": sender, "Destination": {"ToAddresses": rcpts},
            "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "x"}}}}})
    elif v.api == "postmark":
        r = await session.post(f"{base}/email/batch", headers={"X-Postmark-Server-Token": "t"}, json=[
            {"From": sender, "To": a, "Subject": "s", "TextBody": "x"} for a in rcpts])
    elif v.api == "mailgun":
        form = aiohttp.FormData()
        for k, val in (("from", sender), ("to", ", ".join(rcpts)), ("subject", "s"), ("text", "x")):
            form.add_field(k, val)
        auth = base64.b64encode(b"api:key-1").decode()
        r = await session.post(f"{base}/v3/mg.test/messages", data=form, headers={"Authorization": f"Basic {auth}"})
    else:
        r = await session.post(f"{base}/emails/batch", headers={"Authorization": "Bearer re_k"}, json=[
            {"from": sender, "to": [a], "subject": "s", "text": "x"} for a in rcpts])
    text = await r.text()
    assert r.status in (200, 202), (r.status, text)
    return text


def kinds(v: FakeVendor, prefix: str = "mta.webhook.") -> list[dict[str, Any]]:
    evs = v.recorder.events  # type: ignore[attr-defined]
    return [{k: val for k, val in e.items() if k not in ("t_s", "source")} for e in evs if e["kind"].startswith(prefix)]
