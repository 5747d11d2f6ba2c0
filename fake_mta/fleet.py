"""Fleet: many named FakeMTAs in one event loop, plus the HTTP control API and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware
from maildrill.fake_mta.apiguard import guards
from maildrill.fake_mta.clock import Clock, MonotonicClock
from maildrill.fake_mta.config import FleetSpec, problems_of
from maildrill.fake_mta.net import is_loopback
from maildrill.fake_mta.recording import MemoryRecorder, Recorder
from maildrill.fake_mta.server import FakeMTA
from maildrill.fake_mta.vendors import FakeVendor
from pydantic import ValidationError


class Fleet:
    """`async with Fleet(spec) as fleet:` starts every MTA and (unless ``control=False``) the control API.

    MTAs record under ``mta/<name>`` through ``recorder.child``. A control API on a non-loopback
    address requires a bearer token: the spec's, or one generated here (``fleet.control_token``).
    """

    def __init__(self, spec: FleetSpec, *, recorder: Recorder | None = None, clock: Clock | None = None,
                 seed: int = 0, control: bool = True, allow_remote: bool = False, reuse_port: bool = False,
                 webhook_base_url: str | None = None) -> None:
        """`webhook_base_url`: the SUT's base URL, against which a vendor's path-only `webhooks.url` resolves."""
        self.spec = spec
        self.clock: Clock = clock or MonotonicClock()
        self.recorder: Recorder = recorder if recorder is not None else MemoryRecorder("mta", self.clock)
        self.mtas: dict[str, FakeMTA] = {
            m.name: FakeMTA(m, recorder=self.recorder.child(f"mta/{m.name}"), clock=self.clock, seed=seed,
                            allow_remote=allow_remote, reuse_port=reuse_port)
            for m in spec.mtas
        }
        self.vendors: dict[str, FakeVendor] = {
            v.name: FakeVendor(v, recorder=self.recorder.child(f"mta/{v.name}"), clock=self.clock, seed=seed,
                               allow_remote=allow_remote, reuse_port=reuse_port, webhook_base_url=webhook_base_url)
            for v in spec.vendors
        }
        self.members: dict[str, FakeMTA | FakeVendor] = {**self.mtas, **self.vendors}
        self.control_enabled = control
        ctl = spec.control
        if control and not allow_remote and not is_loopback(ctl.host):
            raise ValueError(f"control API host {ctl.host!r} is not loopback; pass allow_remote=True "
                             "(CLI: --allow-remote) to expose it, and it will require a bearer token")
        self.control_token: str | None = ctl.token
        if control and self.control_token is None and not is_loopback(ctl.host):
            self.control_token = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self.control_url: str | None = None
        # control URLs of sibling processes serving the same ports (--processes N): behaviour changes
        # and resets made here are forwarded to them, so the whole fleet changes together
        self.peers: list[str] = []

    def __getitem__(self, name: str) -> Any:
        """The FakeMTA or FakeVendor named `name`."""
        return self.members[name]

    def webhook_material(self) -> dict[str, dict[str, str]]:
        """Per vendor with webhooks, the signing secrets and keys its sibling processes (`maildrill mta
        --processes N`) must share, so that every process signs as the key the SUT was given."""
        return {name: v.webhooks.shared() for name, v in self.vendors.items() if v.webhooks is not None}

    def adopt_webhook_material(self, material: dict[str, dict[str, str]]) -> None:
        """Sign with the first process's material (`webhook_material`); call before `start`."""
        for name, shared in material.items():
            vendor = self.vendors.get(name)
            if vendor is None or vendor.webhooks is None:
                raise ValueError(f"webhook material for {name!r}, which is not a vendor with webhooks here")
            if shared:
                vendor.webhooks.adopt(shared)

    async def start(self) -> None:
        try:
            for member in self.members.values():
                await member.start()
            if self.control_enabled:
                ctl = self.spec.control
                self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
                await self._runner.setup()
                site = web.TCPSite(self._runner, ctl.host, ctl.port)
                await site.start()
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                host = f"[{ctl.host}]" if ":" in ctl.host else ctl.host
                self.control_url = f"http://{host}:{port}"
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for member in self.members.values():
            await member.stop()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- control API (aiohttp) --------------------------------------------------------------------
    def _app(self) -> web.Application:
        # the browser guard (User-Agent Mozilla/ -> 403) and, when a token is set, the bearer check
        middlewares: list[Middleware] = [*guards(self.control_token, hint="printed by `maildrill mta` at start"),
                                         self._errors_mw]
        app = web.Application(middlewares=middlewares, client_max_size=1 << 20)
        r = app.router
        r.add_get("/metrics", self._h_metrics)
        for coll in ("mtas", "vendors"):
            r.add_get(f"/{coll}", self._h_list)
            r.add_get(f"/{coll}/{{name}}", self._h_one)
            r.add_get(f"/{coll}/{{name}}/behaviors", self._h_get_behaviors)
            r.add_put(f"/{coll}/{{name}}/behaviors", self._h_put_behaviors)
            r.add_post(f"/{coll}/{{name}}/reset", self._h_reset)
            r.add_get(f"/{coll}/{{name}}/messages/{{message_id:.+}}", self._h_message)
        return app

    @web.middleware
    async def _errors_mw(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """aiohttp's own 404/405 as the control API's JSON errors."""
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            return _error(405, f"no such endpoint {request.method} {request.path}; see docs/fake-mta.md")
        except web.HTTPNotFound:
            return _error(404, f"no such endpoint {request.method} {request.path}; see docs/fake-mta.md")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "request body too large")

    def _member(self, request: web.Request) -> FakeMTA | FakeVendor:
        name = request.match_info["name"]
        coll = request.path.split("/")[1]
        member = self.members.get(name)
        if member is None or (coll == "vendors" and not isinstance(member, FakeVendor)):
            what = "vendor" if coll == "vendors" else "MTA or vendor"
            names = sorted(self.vendors) if coll == "vendors" else sorted(self.members)
            raise _Stop(_error(404, f"no {what} named {name!r}; defined: {names}"))
        return member

    async def _h_metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.metrics().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _h_list(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/vendors":
            return _json(200, {"vendors": [v.describe() for v in self.vendors.values()]})
        return _json(200, {"mtas": [m.describe() for m in self.mtas.values()],
                           "vendors": [v.describe() for v in self.vendors.values()]})

    async def _h_one(self, request: web.Request) -> web.StreamResponse:
        return await _guard(lambda: _json(200, self._member(request).describe()))

    async def _h_get_behaviors(self, request: web.Request) -> web.StreamResponse:
        return await _guard(lambda: _json(200, {"behaviors": self._member(request).describe()["behaviors"]}))

    async def _h_put_behaviors(self, request: web.Request) -> web.StreamResponse:
        try:
            member = self._member(request)
        except _Stop as stop:
            return stop.response
        body = await request.read()
        return await self._forwarded(request, body, self._put_behaviors(member, body))

    async def _h_reset(self, request: web.Request) -> web.StreamResponse:
        try:
            member = self._member(request)
        except _Stop as stop:
            return stop.response
        body = await request.read()
        member.reset(by="api")
        return await self._forwarded(request, body, _json(200, {"reset": True, "name": member.name}))

    async def _h_message(self, request: web.Request) -> web.StreamResponse:
        try:
            member = self._member(request)
        except _Stop as stop:
            return stop.response
        message_id = request.match_info["message_id"]
        found = member.lookup_message(message_id)
        if found is None:
            what = "MTA" if isinstance(member, FakeMTA) else "vendor"
            label = "Message-ID" if isinstance(member, FakeMTA) else "message id"
            return _error(404, f"{what} {member.name!r} accepted no message with {label} {message_id!r}",
                          accepted=False)
        return _json(200, found)

    async def _forwarded(self, request: web.Request, body: bytes, response: web.Response) -> web.Response:
        if response.status != 200 or not self.peers:
            return response
        failed = await asyncio.to_thread(_forward, self.peers, request.method, request.path, body,
                                         self.control_token)
        if failed:
            return _error(502, f"changed here, but not in {len(failed)} sibling process(es): {failed}")
        return response

    def _put_behaviors(self, member: FakeMTA | FakeVendor, raw: bytes) -> web.Response:
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        items = body.get("behaviors") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return _error(400, 'body must be a JSON list of behaviours or {"behaviors": [...]}')
        try:
            member.set_behaviors(items, by="api")
        except ValidationError as exc:
            problems = [f"{p} {m}" if m.startswith("= ") else f"{p}: {m}"
                        for p, m in problems_of(exc, prefix="behaviors")]
            return _error(400, f"{len(problems)} problem(s) in the behaviour list", problems=problems)
        return _json(200, {"behaviors": member.describe()["behaviors"]})

    def metrics(self) -> str:
        """Prometheus text exposition (format 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label_s = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{label_s}}} {value:g}")

        mtas: list[Any] = list(self.members.values())
        family("maildrill_mta_up", "gauge", "1 when the MTA's (or vendor's) listener accepts connections",
               [({"mta": m.name}, 1 if m.listening else 0) for m in mtas])
        family("maildrill_mta_connections_total", "counter", "TCP connections accepted",
               [({"mta": m.name}, m.counts["connections"]) for m in mtas])
        family("maildrill_mta_connections_open", "gauge", "connections open now",
               [({"mta": m.name}, len(m.connections)) for m in mtas])
        family("maildrill_vendor_http_responses_total", "counter", "HTTP responses a fake vendor sent, by status",
               [({"mta": v.name, "api": v.api, "status": k.removeprefix("http_")}, n) for v in self.vendors.values()
                for k, n in sorted(v.counts.items()) if k.startswith("http_")])
        family("maildrill_mta_replies_total", "counter", "SMTP replies sent (a vendor's: the SMTP-equivalent code), "
               "by reply code",
               [({"mta": m.name, "code": str(code)}, n) for m in mtas for code, n in sorted(m.replies_by_code.items())])
        family("maildrill_mta_messages_accepted_total", "counter", "messages accepted (one per recipient)",
               [({"mta": m.name}, m.counts["messages_accepted"]) for m in mtas])
        family("maildrill_mta_messages_discarded_total", "counter", "messages blackholed (250 sent, not delivered)",
               [({"mta": m.name}, m.counts["messages_discarded"]) for m in mtas])
        family("maildrill_mta_acks_lost_total", "counter", "messages stored whose 250 (or response) was never sent",
               [({"mta": m.name}, m.counts["acks_lost"]) for m in mtas])
        family("maildrill_mta_protocol_errors_total", "counter", "malformed input, oversized data, timeouts",
               [({"mta": m.name}, m.counts["protocol_errors"]) for m in mtas])
        return "\n".join(out) + "\n"


class _Stop(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _guard(make: Callable[[], web.Response]) -> web.Response:
    try:
        return make()
    except _Stop as stop:
        return stop.response


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=(json.dumps(body) + "\n").encode(), content_type="application/json",
                        headers=headers)


def _forward(peers: list[str], method: str, path: str, body: bytes, token: str | None) -> list[str]:
    """Send the same request to each peer; the peers that did not answer 200."""
    failed = []
    for peer in peers:
        fwd = urllib.request.Request(f"{peer}{urllib.parse.quote(path)}", data=body or None,
                                     method=method, headers={"Content-Type": "application/json"})
        if token:
            fwd.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(fwd, timeout=10) as resp:
                ok = resp.status == 200
        except (OSError, urllib.error.URLError):
            ok = False
        if not ok:
            failed.append(peer)
    return failed


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return _json(status, {"error": message, "status": status, **extra}, headers)
