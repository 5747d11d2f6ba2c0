"""Fleet: many named FakeMTAs in one event loop, plus the HTTP control API and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from maildrill.fake_mta.clock import Clock, MonotonicClock
from maildrill.fake_mta.config import FleetSpec, problems_of
from maildrill.fake_mta.httpserver import HTTPServer, Request, Response
from maildrill.fake_mta.net import is_loopback
from maildrill.fake_mta.recording import MemoryRecorder, Recorder
from maildrill.fake_mta.server import FakeMTA
from pydantic import ValidationError


class Fleet:
    """`async with Fleet(spec) as fleet:` starts every MTA and (unless ``control=False``) the control API.

    MTAs record under ``mta/<name>`` through ``recorder.child``. A control API on a non-loopback
    address requires a bearer token: the spec's, or one generated here (``fleet.control_token``).
    """

    def __init__(self, spec: FleetSpec, *, recorder: Recorder | None = None, clock: Clock | None = None,
                 seed: int = 0, control: bool = True, allow_remote: bool = False, reuse_port: bool = False) -> None:
        self.spec = spec
        self.clock: Clock = clock or MonotonicClock()
        self.recorder: Recorder = recorder if recorder is not None else MemoryRecorder("mta", self.clock)
        self.mtas: dict[str, FakeMTA] = {
            m.name: FakeMTA(m, recorder=self.recorder.child(f"mta/{m.name}"), clock=self.clock, seed=seed,
                            allow_remote=allow_remote, reuse_port=reuse_port)
            for m in spec.mtas
        }
        self.control_enabled = control
        ctl = spec.control
        if control and not allow_remote and not is_loopback(ctl.host):
            raise ValueError(f"control API host {ctl.host!r} is not loopback; pass allow_remote=True "
                             "(CLI: --allow-remote) to expose it, and it will require a bearer token")
        self.control_token: str | None = ctl.token
        if control and self.control_token is None and not is_loopback(ctl.host):
            self.control_token = secrets.token_urlsafe(24)
        self._http: HTTPServer | None = None
        self.control_url: str | None = None
        # control URLs of sibling processes serving the same ports (--processes N): behaviour changes
        # and resets made here are forwarded to them, so the whole fleet changes together
        self.peers: list[str] = []

    def __getitem__(self, name: str) -> FakeMTA:
        return self.mtas[name]

    async def start(self) -> None:
        try:
            for mta in self.mtas.values():
                await mta.start()
            if self.control_enabled:
                self._http = HTTPServer(self.handle, self.spec.control.host, self.spec.control.port)
                await self._http.start()
                self.control_url = self._http.url
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
            self._http = None
        for mta in self.mtas.values():
            await mta.stop()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- control API ------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        """GET /mtas, GET/PUT /mtas/{name}/behaviors, POST /mtas/{name}/reset,
        GET /mtas/{name}/messages/{message_id}, GET /metrics. JSON in and out (metrics: Prometheus text)."""
        if self.control_token is not None:
            given = req.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.control_token}".encode()):
                return _error(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                   "(printed by `maildrill mta` at start)", headers={"WWW-Authenticate": "Bearer"})
        parts = [p for p in req.path.split("/") if p]
        if parts == ["metrics"] and req.method == "GET":
            return Response(200, self.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")
        if parts == ["mtas"] and req.method == "GET":
            return Response(200, {"mtas": [m.describe() for m in self.mtas.values()]})
        if len(parts) < 2 or parts[0] != "mtas":
            return _error(404, f"no such endpoint {req.method} {req.path}; see docs/fake-mta.md")
        mta = self.mtas.get(parts[1])
        if mta is None:
            return _error(404, f"no MTA named {parts[1]!r}; defined: {sorted(self.mtas)}")
        rest = parts[2:]
        if rest == [] and req.method == "GET":
            return Response(200, mta.describe())
        if rest == ["behaviors"] and req.method == "GET":
            return Response(200, {"behaviors": mta.describe()["behaviors"]})
        if rest == ["behaviors"] and req.method == "PUT":
            return await self._forwarded(req, self._put_behaviors(mta, req))
        if rest == ["reset"] and req.method == "POST":
            mta.reset(by="api")
            return await self._forwarded(req, Response(200, {"reset": True, "name": mta.name}))
        if len(rest) == 2 and rest[0] == "messages" and req.method == "GET":
            found = mta.lookup_message(rest[1])
            if found is None:
                return _error(404, f"MTA {mta.name!r} accepted no message with Message-ID {rest[1]!r}",
                              accepted=False)
            return Response(200, found)
        return _error(405 if rest in (["behaviors"], ["reset"]) else 404,
                      f"no such endpoint {req.method} {req.path}; see docs/fake-mta.md")

    async def _forwarded(self, req: Request, response: Response) -> Response:
        if response.status != 200 or not self.peers:
            return response
        failed = await asyncio.to_thread(_forward, self.peers, req, self.control_token)
        if failed:
            return _error(502, f"changed here, but not in {len(failed)} sibling process(es): {failed}")
        return response

    def _put_behaviors(self, mta: FakeMTA, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError as exc:
            return _error(400, str(exc))
        items = body.get("behaviors") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return _error(400, 'body must be a JSON list of behaviours or {"behaviors": [...]}')
        try:
            mta.set_behaviors(items, by="api")
        except ValidationError as exc:
            problems = [f"{p} {m}" if m.startswith("= ") else f"{p}: {m}"
                        for p, m in problems_of(exc, prefix="behaviors")]
            return _error(400, f"{len(problems)} problem(s) in the behaviour list", problems=problems)
        return Response(200, {"behaviors": mta.describe()["behaviors"]})

    def metrics(self) -> str:
        """Prometheus text exposition (format 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label_s = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{label_s}}} {value:g}")

        mtas = list(self.mtas.values())
        family("maildrill_mta_up", "gauge", "1 when the MTA's listener accepts connections",
               [({"mta": m.name}, 1 if m.listening else 0) for m in mtas])
        family("maildrill_mta_connections_total", "counter", "TCP connections accepted",
               [({"mta": m.name}, m.counts["connections"]) for m in mtas])
        family("maildrill_mta_connections_open", "gauge", "connections open now",
               [({"mta": m.name}, len(m.connections)) for m in mtas])
        family("maildrill_mta_replies_total", "counter", "SMTP replies sent, by reply code",
               [({"mta": m.name, "code": str(code)}, n) for m in mtas for code, n in sorted(m.replies_by_code.items())])
        family("maildrill_mta_messages_accepted_total", "counter", "messages accepted (one per recipient)",
               [({"mta": m.name}, m.counts["messages_accepted"]) for m in mtas])
        family("maildrill_mta_messages_discarded_total", "counter", "messages blackholed (250 sent, not delivered)",
               [({"mta": m.name}, m.counts["messages_discarded"]) for m in mtas])
        family("maildrill_mta_acks_lost_total", "counter", "messages stored whose 250 was never sent (lose_ack)",
               [({"mta": m.name}, m.counts["acks_lost"]) for m in mtas])
        family("maildrill_mta_protocol_errors_total", "counter", "malformed input, oversized data, timeouts",
               [({"mta": m.name}, m.counts["protocol_errors"]) for m in mtas])
        return "\n".join(out) + "\n"


def _forward(peers: list[str], req: Request, token: str | None) -> list[str]:
    """Send the same request to each peer; the peers that did not answer 200."""
    failed = []
    for peer in peers:
        fwd = urllib.request.Request(f"{peer}{urllib.parse.quote(req.path)}", data=req.body or None,
                                     method=req.method, headers={"Content-Type": "application/json"})
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


def _error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(status, {"error": message, "status": status, **extra}, headers=headers or {})
