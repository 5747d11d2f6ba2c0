"""FakeVendor: one fake HTTP email-API vendor on aiohttp's server; the MTAs' behaviours at the vendor's wire text.

Each request is one delivery attempt (`conn`, `txn` = request number on the connection) recorded with the
same event kinds as a fake MTA (source ``mta/<name>``), so the analysis reads SMTP and API fleets alike.
A `Wire` (one module per vendor) knows the routes, how to read a request and how the vendor words each
answer; this module runs the behaviours and records what happened, before the response is written.

Why aiohttp: a maintained asyncio HTTP/1.1 server with keep-alive, chunked bodies and a strict parser
(malformed requests get its 400), used beside aiosmtpd in the same event loop; its low-level `web.Server`
gives the per-connection hooks a fault injector needs (which connection a request came on, closing or
resetting it mid-request) without a hand-written parser.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import CoroutineType
from typing import Any, NoReturn

from aiohttp import web, web_protocol
from aiohttp.http import SERVER_SOFTWARE, HttpProcessingError, HttpRequestParser, HttpVersion11
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from maildrill.fake_mta.behaviors import Behavior, Context, Throttle, build
from maildrill.fake_mta.config import (
    BehaviorSpec,
    GoDarkMode,
    GoDarkSpec,
    RejectSpec,
    TarpitSpec,
    TempfailSpec,
    ThrottleSpec,
    VendorSpec,
    Verb,
    WebhookPauseSpec,
    parse_vendor_behaviors,
)
from maildrill.fake_mta.listener import Listener
from maildrill.fake_mta.presets import GENERIC
from maildrill.fake_mta.recording import MemoryRecorder, Recorder
from maildrill.fake_mta.vendors.webhooks import WebhookDispatcher
from orjson import loads as _orjson_loads
from pydantic import BaseModel

from maildrill.vocabulary import EventKind

# SMTP-equivalent reply code in mta.reply.sent (the analysis reads these), per outcome
CODE_ACCEPTED = 250
CODE_THROTTLED = 421  # the MTAs' throttle reply: the analysis and assert_backs_off_after_421 read it
CODE_TEMPFAIL = 451  # the vendor's 5xx: try again later
CODE_REJECTED = 550  # a recipient refused for good (invalid, suppressed, inactive)
CODE_REFUSED = 554  # any other permanent refusal: bad request, bad key, too large, no such route
ENHANCED = {CODE_ACCEPTED: "2.0.0", CODE_THROTTLED: "4.7.0", CODE_TEMPFAIL: "4.3.0", CODE_REJECTED: "5.1.1",
            CODE_REFUSED: "5.5.0"}
IDEMPOTENCY_WINDOW_S = 24 * 3600.0
DAY_S = 86400.0
MAX_REMEMBERED_MESSAGES = 1_000_000
_HTTP_COUNT = {s: f"http_{s}" for s in range(100, 600)}  # counts keys, built once
_NO_RCPTS: list[str] = []
_AIOHTTP_ERROR = getattr(web_protocol, "ERROR", None)  # the message aiohttp hands the factory for a bad request


@dataclass(slots=True)
class Message:
    """One message of a request (a batch has several): its sender and recipients (to, cc, bcc)."""

    sender: str | None
    rcpts: list[str]


@dataclass(slots=True)
class Mail:
    """What a wire read from a send request."""

    messages: list[Message]
    size: int = 0

    @property
    def rcpts(self) -> list[str]:
        msgs = self.messages
        return msgs[0].rcpts if len(msgs) == 1 else [r for m in msgs for r in m.rcpts]

    @property
    def sender(self) -> str | None:
        return self.messages[0].sender if self.messages else None


@dataclass(slots=True)
class Answer:
    """One HTTP response as the vendor words it. `code` is the SMTP-equivalent class for the events."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    code: int = CODE_REFUSED
    error_code: str | None = None
    text: str = ""


class WireError(Exception):
    """A request the vendor refuses before any behaviour is asked (bad JSON, no key, too large, no route)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.text)
        self.answer = answer


@dataclass(slots=True)
class Limit:
    """A rate limit as the vendor's headers tell it: `limit` per window, `remaining`, `reset_s` from now."""

    limit: int
    remaining: int
    reset_s: float
    daily: bool = False


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


WIRES: dict[str, type[Wire]] = {}  # api -> its Wire subclass, filled as the wire modules are imported


class Wire:
    """One vendor's HTTP dialect. Subclasses set `api` and implement the methods below."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        WIRES[cls.api] = cls

    api = "vendor"
    max_body = 10 * 1024 * 1024
    max_rcpts = 50
    idempotent = False  # honours Idempotency-Key (Resend)
    # endpoints answered message by message: a refused recipient fails its own message of the batch, in the
    # batch's 200 (Postmark's /email/batch); elsewhere a refusal fails the whole request
    per_message: frozenset[str] = frozenset()
    endpoints: dict[tuple[str, str], str] = {}  # (method, path regex) -> endpoint name

    def __init__(self, vendor_name: str, rng: random.Random) -> None:
        self.vendor_name = vendor_name
        self.ids = rng
        self._routes = [(m, re.compile(p), name) for (m, p), name in self.endpoints.items()]
        self._routed: dict[tuple[str, str], str] = {}  # (method, path) -> endpoint, of paths seen (bounded)

    def route(self, method: str, path: str) -> str:
        hit = self._routed.get((method, path))
        if hit is not None:
            return hit
        allowed = []
        for m, rx, name in self._routes:
            if rx.fullmatch(path):
                if m == method:
                    if len(self._routed) < 1024:
                        self._routed[(method, path)] = name
                    return name
                allowed.append(m)
        if allowed:
            raise WireError(self.error(405, "method", f"{method} is not allowed on {path}; use {allowed[0]}",
                                       allow=allowed[0]))
        raise WireError(self.error(404, "not_found", f"no such endpoint {method} {path}"))

    def api_key(self, request: web.BaseRequest) -> str | None:
        raise NotImplementedError

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        raise NotImplementedError

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        raise NotImplementedError

    def batch(self, endpoint: str, mail: Mail, ids: list[str | None], refusals: list[Answer | None]) -> Answer:
        """The answer of a `per_message` endpoint some of whose messages were refused: message i accepted as ids[i],
        or refused with refusals[i] (the vendor's `error` for it)."""
        raise NotImplementedError

    def message_id(self, n: int) -> str:
        """A fresh message id in the vendor's format."""
        b = self.ids.getrandbits(128)
        h = f"{b:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None) -> Answer:
        """The vendor's answer for an error of `kind`: bad_request, too_large, not_found, method, content_type,
        no_key, bad_key, throttle, reject_unknown_user / reject_policy / reject_blocked / reject_auth, tempfail."""
        raise NotImplementedError

    def rate_headers(self, limit: Limit | None, answer: Answer) -> None:
        """Headers the vendor puts on replies about its rate limit (SendGrid: every reply)."""

    def too_many(self, mail: Mail) -> Answer | None:
        """The vendor's refusal of a request with more recipients than it allows, else None."""
        n = len(mail.rcpts) if len(mail.messages) == 1 else max(len(m.rcpts) for m in mail.messages)
        if n > self.max_rcpts:
            return self.error(400, "bad_request", f"too many recipients ({n}); at most {self.max_rcpts}")
        return None

    def json_body(self, body: bytes, request: web.BaseRequest) -> Any:
        ctype = content_type(request)
        if ctype != "application/json":
            raise WireError(self.error(415 if ctype else 400, "content_type",
                                       f"Content-Type must be application/json, got {ctype or 'none'}"))
        try:
            return parse_json(body)
        except ValueError as exc:
            raise WireError(self.error(400, "bad_json", f"request body is not valid JSON: {exc}")) from None


def parse_json(body: bytes) -> Any:
    """A request body's JSON; ValueError saying why not. orjson first; json decides what orjson refuses (NaN,
    UTF-16, huge ints), except a lone UTF-16 surrogate ("\\ud800"): valid JSON to json but no character, so no
    vendor could store it (nor this one record it)."""
    try:
        return _orjson_loads(body)
    except ValueError:
        pass
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None
    try:
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"it holds a lone UTF-16 surrogate ({exc.object[exc.start:exc.end]!r}), "
                         "which is no character") from None
    return parsed


_PLAIN_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded", "application/x-amz-json-1.1"})


def content_type(request: web.BaseRequest) -> str:
    """`request.content_type`, without aiohttp's header parse when the header is just one of the usual types."""
    raw = request.headers.get("Content-Type")
    return raw if raw is not None and raw in _PLAIN_TYPES else request.content_type


def bearer(request: web.BaseRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class _Conn:
    __slots__ = ("by", "closing_reason", "conn", "handler", "ip", "ready", "txn", "waiters")

    def __init__(self, conn: int, handler: RequestHandler, ip: str) -> None:
        self.conn = conn
        self.handler = handler
        self.ip = ip
        self.txn = 0
        self.by: str | None = None
        self.closing_reason: str | None = None
        self.waiters: list[asyncio.Future[None]] = []
        # (the request's payload, its result) of a request answered in data_received that aiohttp must write
        self.ready: tuple[Any, Any] | None = None


class _Server(web.Server):
    """aiohttp's low-level server, telling the vendor when connections open and close; its connections are
    `_Handler`s where this aiohttp has what they rely on."""

    def __init__(self, vendor: FakeVendor, **kwargs: Any) -> None:
        super().__init__(vendor._handle, **kwargs)
        self.vendor = vendor

    def __call__(self) -> RequestHandler:
        if not FAST_LANE:
            return super().__call__()
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.vendor = self.vendor
        return handler

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.vendor._opened(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.vendor._lost(handler, exc)


# What _Handler uses of aiohttp's RequestHandler beyond its public API (aiohttp 3.14's names): without any of them
# the vendors use aiohttp's own handler, as they would anyway, only slower.
_HANDLER_NEEDS = ("_waiter", "_messages", "_payload_parser", "_upgraded", "_force_close", "_close", "_parser",
                  "_request_count", "_manager", "_keepalive_timeout", "_next_keepalive_close_time",
                  "_keepalive_handle", "_process_keepalive", "_loop", "_buffer_paused", "_max_msg_queue_size",
                  "_pause_reading_for_buffer", "_message_tail")
_ErrInfo: Any = getattr(web_protocol, "_ErrInfo", None)
FAST_LANE = (_ErrInfo is not None and all(hasattr(RequestHandler, a) for a in _HANDLER_NEEDS)
             and hasattr(HttpRequestParser, "message_consumed"))


class _Handler(RequestHandler):
    """aiohttp's request handler, serving a request inside `data_received` when the connection is idle and the
    request is all here (its body too): the vendor's answer is computed there, its events recorded, and a
    prebuilt reply written at the end of the loop's turn, as `_handle` would, without the task, stream writer and
    response machinery aiohttp's loop makes for each request (about a fifth of a request's cost). Anything else,
    and any answer aiohttp must write itself (an error, a hang, a tarpit, a closed connection), goes to aiohttp's
    own loop in order: the first such request with its result kept for `_handle`, the ones after it as they came.
    The parsing is aiohttp's own; so are keep-alive, pipelining limits and bad-request answers."""

    __slots__ = ("vendor",)
    vendor: FakeVendor

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (waiter is None or waiter.done() or self._messages or self._payload_parser is not None  # busy
                or self._upgraded or self._force_close or self._close or self.writing_paused):
            super().data_received(data)
            return
        assert self._parser is not None
        try:
            messages, upgraded, tail = self._parser.feed_data(data)
        except HttpProcessingError as exc:  # as aiohttp's data_received answers it: its 400
            messages = [(_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)]
            upgraded, tail = False, b""
        queued = False
        vendor = self.vendor
        for message, payload in messages:
            self._request_count += 1
            if (not queued and message.__class__ is not _ErrInfo and not upgraded and payload.is_eof()
                    and vendor._answer_now(self, message, payload)):
                self._parser.message_consumed()  # the slot aiohttp's loop frees when it takes a request
                self._manager.requests_count += 1  # type: ignore[union-attr]
                continue
            queued = True
            self._messages.append((message, payload))
        if queued:
            waiter.set_result(None)
            if not self._buffer_paused and len(self._messages) >= self._max_msg_queue_size:
                self._pause_reading_for_buffer()
        elif messages:  # keep-alive counts from the last request answered, as aiohttp's loop counts it
            loop = self._loop
            self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
            if self._keepalive_handle is None:
                self._keepalive_handle = loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        self._upgraded = upgraded
        if upgraded and tail:
            self._message_tail = tail


async def _raise(exc: BaseException) -> NoReturn:
    raise exc


_REASONS = {int(s): s.phrase for s in HTTPStatus}
_SERVER_LINE = f"Server: {SERVER_SOFTWARE}\r\n\r\n"
_OWN_HEADERS = frozenset(f(h) for h in ("Content-Type", "Content-Length", "Date", "Server", "Connection",
                                           "Transfer-Encoding") for f in (str, str.lower, str.upper))
_date_line = [-1, ""]  # [epoch second, its "Date: ...\r\n" line]: one formatting a second, as aiohttp does


def _response(request: web.BaseRequest, answer: Answer) -> web.StreamResponse:
    """The HTTP response for `answer`. A plain success on a keep-alive HTTP/1.1 request (the hot path) is built as
    one byte string, the bytes aiohttp's `web.Response` writes for it (status line, the vendor's headers in order,
    Content-Type, Content-Length, Date, Server, body), and written in one call; everything else (errors, HEAD,
    HTTP/1.0, Connection: close, odd header values) goes through `web.Response`."""
    status = answer.status
    body = answer.body
    ctype = answer.content_type
    if (200 <= status < 300 and status != 204 and (ctype is not None or not body) and request.keep_alive
            and request.version == HttpVersion11 and request.method != "HEAD"):
        headers = answer.headers
        lines = "\r\n".join(map(": ".join, headers.items())) + "\r\n" if headers else ""
        n = len(headers)
        # a CR or LF inside a value (aiohttp refuses it), or a header aiohttp writes itself: aiohttp decides
        if lines.count("\r") == n and lines.count("\n") == n and _OWN_HEADERS.isdisjoint(headers):
            now = int(time.time())
            if _date_line[0] != now:
                _date_line[0], _date_line[1] = now, f"Date: {formatdate(now, usegmt=True)}\r\n"
            ctype_line = "" if ctype is None else f"Content-Type: {ctype}\r\n"
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n{lines}{ctype_line}Content-Length: {len(body)}\r\n"
                    f"{_date_line[1]}{_SERVER_LINE}")
            data = head.encode() + body if body else head.encode()
            return _Prebuilt(status, data, request.protocol.transport)  # type: ignore[return-value]
    return web.Response(status=status, body=body, content_type=ctype, headers=answer.headers)


class _Prebuilt:
    """A response whose bytes are already built, for aiohttp's request handler (which needs only `prepare`,
    `write_eof` and `keep_alive` of what a handler returns). `send` hands the bytes to the transport in one write,
    once the events about it are handed to the OS (the event writer calls it, at the end of the loop's turn; if
    writing the events failed it closes the connection instead: no reply without its events). `prepare` raises
    ConnectionResetError on a closed transport as aiohttp's writer does, and waits for the transport to drain
    when the client is not reading. No `web.StreamResponse` (its header multidict, cookies, state) is made."""

    __slots__ = ("_data", "_to", "status")
    keep_alive = True

    def __init__(self, status: int, data: bytes, transport: asyncio.BaseTransport | None) -> None:
        self.status = status
        self._data = data
        self._to = transport

    def send(self, recorded: bool) -> None:
        transport = self._to
        if transport is None or transport.is_closing():
            return
        if recorded:
            transport.write(self._data)  # type: ignore[attr-defined]
        else:
            transport.close()

    async def prepare(self, request: web.BaseRequest) -> None:
        protocol = request.protocol
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")  # as aiohttp's writer (its subclass)
        if protocol.writing_paused:
            await request.writer.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _wires() -> dict[str, type[Wire]]:
    """Every wire, by api: each registers itself when its module is imported (the package imports them all),
    so this module never imports the wire modules that import it."""
    return WIRES


class FakeVendor:
    """`async with FakeVendor(VendorSpec(name="primary", api="sendgrid")) as v:` serves the vendor's API on
    ``v.base_url`` (the string its SDK takes as host / endpoint_url) until the block ends.

    Events go to `recorder` under source ``mta/<name>`` (a MemoryRecorder when none is given). Binding a
    non-loopback address needs ``allow_remote=True``. Raises OSError (errno EADDRINUSE) when the port is taken.
    """

    def __init__(self, spec: VendorSpec, *, recorder: Recorder | None = None, clock: Any = None, seed: int = 0,
                 allow_remote: bool = False, reuse_port: bool = False, webhook_base_url: str | None = None) -> None:
        from maildrill.fake_mta.clock import MonotonicClock
        from maildrill.fake_mta.net import is_loopback

        if not allow_remote and not is_loopback(spec.host):
            raise ValueError(f"fake vendor {spec.name!r}: host {spec.host!r} is not loopback; a fault-injecting API "
                             "on a network is a way in. Pass allow_remote=True (CLI: --allow-remote) to bind it.")
        self.spec = spec
        self.name = spec.name
        self.api = spec.api
        self.host = spec.host
        self._listener = Listener(f"fake vendor {self.name!r}", spec.host, spec.port, self._protocol,
                                  lambda: self.recorder, reuse_port=reuse_port, nodelay=True)
        self.clock = clock or MonotonicClock()
        self.recorder: Recorder = recorder if recorder is not None else MemoryRecorder(f"mta/{self.name}", self.clock)
        self.seed = seed
        self.rng = random.Random(f"{seed}:{self.name}")
        self.wire: Wire = _wires()[spec.api](spec.name, random.Random(f"{seed}:{self.name}:ids"))
        self._corr_rx = re.compile(spec.corr_pattern)
        self.behaviors: list[BehaviorSpec] = []
        self.runtime: list[Behavior] = []
        # delivery webhooks (fake_mta.vendors.webhooks); `webhook_base_url`: the SUT's, for a path in webhooks.url
        self.webhooks: WebhookDispatcher | None = None
        if spec.webhooks is not None and spec.webhooks.enabled:
            self.webhooks = WebhookDispatcher(self.name, self.api, spec.webhooks, recorder=self.recorder,
                                              clock=self.clock, seed=seed, base_url=webhook_base_url,
                                              vendor_url=lambda: self.base_url)
        self._install(list(spec.behaviors))
        self._conns: dict[RequestHandler, _Conn] = {}
        self._conn_seq = 0
        self._http: _Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it serves on, from start()
        self._started = False
        self._timers: list[asyncio.TimerHandle] = []
        self._idempotency: dict[str, tuple[float, bytes, Answer]] = {}
        self._daily: dict[int, list[float]] = {}  # behaviour index -> [window start, messages accepted]
        self.messages: dict[str, tuple[float, str, int]] = {}  # message id -> (t_s, ack, recipients)
        self.replies_by_code: Counter[int] = Counter()
        self.counts: Counter[str] = Counter()
        self._record_many = getattr(self.recorder, "record_many", None)

    # --- behaviours -------------------------------------------------------------------------------
    def _install(self, specs: list[BehaviorSpec]) -> None:
        self.behaviors = specs
        self.runtime = build(specs, GENERIC)
        if self.webhooks is not None:
            self.webhooks.set_pauses([(b.spec.mode, b.spec.match_rcpt) for b in self.runtime
                                      if isinstance(b.spec, WebhookPauseSpec)])

    def set_behaviors(self, behaviors: Sequence[BehaviorSpec | dict[str, Any]], *, by: str = "api") -> None:
        """Replace the behaviour list; applies from the next request. go_dark refuse closes the listener and
        open connections; leaving it reopens the same port. Raises pydantic.ValidationError on a bad list."""
        from maildrill.fake_mta.server import behaviors_json

        specs = parse_vendor_behaviors([b.model_dump() if isinstance(b, BaseModel) else b for b in behaviors],
                                       self.api)
        was_refusing = self._refusing()
        self._install(specs)
        self._daily.clear()
        self.recorder.record("mta.behaviors.changed", None, behaviors=behaviors_json(specs), by=by)
        if not self._started:
            return
        if self._refusing() and not was_refusing:
            self._listener.close("go_dark refuse")
            for c in list(self._conns.values()):
                self._close(c, "go_dark refuse: listener and connections closed")
        elif was_refusing and not self._refusing():
            self._listener.open("behaviors changed")

    def _refusing(self) -> bool:
        return any(b.kind == "go_dark" and b.spec.mode is GoDarkMode.REFUSE for b in self.runtime)  # type: ignore

    def reset(self, *, by: str = "api") -> None:
        """Forget token buckets, daily quotas and idempotency keys; reseed the probability RNG and the webhooks'
        (the fates of the messages accepted after it repeat those after the start)."""
        for b in self.runtime:
            b.reset()
        self._daily.clear()
        self._idempotency.clear()
        self.rng = random.Random(f"{self.seed}:{self.name}")
        if self.webhooks is not None:
            self.webhooks.reseed()
        self.recorder.record("mta.reset", None, by=by)

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What the vendor's SDK takes as its host / endpoint URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._started:
            return
        if self.webhooks is not None:
            await self.webhooks.start()  # a webhooks.url it cannot resolve fails here, before anything listens
        self._loop = asyncio.get_running_loop()
        self._http = _Server(self, keepalive_timeout=300.0, request_factory=self._make_request,
                             handler_cancellation=False, access_log=None)
        self._started = True
        await self._listener.start(refusing=self._refusing())
        loop = asyncio.get_running_loop()
        for phase in self.spec.timeline:
            self._timers.append(loop.call_later(phase.at_s, self._phase, phase.behaviors))

    def _phase(self, behaviors: list[BehaviorSpec]) -> None:
        self.set_behaviors(behaviors, by="timeline")

    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        # the loop start() ran on, as aiohttp's own factory passes its server's: asyncio.get_running_loop()
        # makes a getpid() system call on every request
        assert self._loop is not None
        if message is _AIOHTTP_ERROR:  # aiohttp answers this one itself: after the replies still waiting
            self._flush_waiting()
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop,
                               client_max_size=self.wire.max_body)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self._listener.stop(self._close_connections, lambda: not self._conns)

    def _close_connections(self) -> None:
        self._flush_waiting()
        for c in list(self._conns.values()):
            self._close(c, "server stopped")

    async def __aenter__(self) -> FakeVendor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (bound at start when the spec says 0)."""
        return self._listener.port

    def _protocol(self) -> asyncio.BaseProtocol:
        assert self._http is not None  # made in start(), before anything listens
        return self._http()

    @property
    def listening(self) -> bool:
        return self._listener.listening

    @property
    def connections(self) -> list[int]:
        return [c.conn for c in self._conns.values()]

    # --- connections ------------------------------------------------------------------------------
    def _opened(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self._conn_seq += 1
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self._conns[handler] = _Conn(self._conn_seq, handler, ip)
        self.counts["connections"] += 1
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.recorder.record("mta.connection.opened", None, conn=self._conn_seq, peer=peer_s)

    def _lost(self, handler: RequestHandler, exc: BaseException | None) -> None:
        c = self._conns.pop(handler, None)
        if c is None:
            return
        if c.ready is not None:  # a request answered in data_received that aiohttp will never take now
            if c.ready[1].__class__ is CoroutineType:
                c.ready[1].close()
            c.ready = None
        for b in self.runtime:
            if isinstance(b, Throttle):
                b.forget_connection(c.conn)
        for w in c.waiters:
            if not w.done():
                w.set_result(None)
        if c.by is None:
            c.by, c.closing_reason = "client", f"connection lost: {exc}" if exc else "client closed the connection"
        self.recorder.record("mta.connection.closed", None, conn=c.conn, by=c.by, reason=c.closing_reason or "")

    def _close(self, c: _Conn, reason: str, *, reset: bool = False) -> None:
        if c.by is None:
            c.by, c.closing_reason = "server", reason
        transport = c.handler.transport
        if transport is None:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    # --- one request ------------------------------------------------------------------------------
    def corr_of(self, address: str) -> str | None:
        m = self._corr_rx.search(address)
        return m.group("corr") if m else None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        c = self._conns.get(request.protocol)
        if c is None:  # the connection is already gone
            return web.Response(status=204)
        ready = c.ready
        if ready is not None and ready[0] is request.content:  # answered in data_received (_Handler): its result
            c.ready = None
            result: Any = ready[1]
        else:
            result = self._begin(c, request)
            if result.__class__ is str:  # the endpoint: read the body
                try:
                    body: bytes | None = await request.read()
                except web.HTTPRequestEntityTooLarge:
                    body = None
                result = self._serve(c, request, result, body)
        if result.__class__ is CoroutineType:  # a tarpit, a hang: the rest waits
            return await result  # type: ignore[no-any-return]
        return result  # type: ignore[no-any-return]

    def _answer_now(self, handler: RequestHandler, message: Any, payload: Any) -> bool:
        """Serve a request whose body is all here inside `data_received` (see `_Handler`), without aiohttp's task:
        True when its reply is on its way (a prebuilt response, written at the end of the loop's turn after its
        events). False when aiohttp must write it (an error, a hang, a tarpit): the result waits in the
        connection's `ready` for `_handle`, and the caller queues the request to aiohttp as usual."""
        c = self._conns.get(handler)
        if c is None:
            return False
        request = web.BaseRequest(message, payload, handler, None, None, self._loop,  # type: ignore[arg-type]
                                  client_max_size=self.wire.max_body)
        result: Any
        try:
            result = self._begin(c, request)
            if result.__class__ is str:
                body: bytes = payload.read_nowait(-1)
                # over the vendor's limit: None, as request.read() refuses it
                result = self._serve(c, request, result, body if len(body) <= self.wire.max_body else None)
        except Exception as exc:  # aiohttp answers it as it would from _handle: a 500, logged
            result = _raise(exc)
        if result.__class__ is _Prebuilt:
            return True
        c.ready = (payload, result)
        return False

    def _begin(self, c: _Conn, request: web.BaseRequest) -> str | web.StreamResponse:
        """A request's first part, before its body is read: its endpoint, or the response that ends it already
        (no such route, a body over the vendor's limit, the fake's own webhook pages)."""
        if self.webhooks is not None and request.path.startswith("/_maildrill/"):
            served = self.webhooks.serve(request.method, request.path, dict(request.query))
            if served is not None:  # SNS's signing certificate and subscription links: not a send
                self._flush_waiting()
                return web.Response(status=served[0], content_type=served[1], body=served[2])
        c.txn += 1
        wire = self.wire
        try:
            endpoint = wire.route(request.method, request.path)
            length = request.content_length
            if length is not None and length > wire.max_body:
                raise WireError(wire.error(413, "too_large", f"request body of {length} bytes is over the "
                                                             f"{wire.max_body} bytes {self.api} accepts"))
        except WireError as exc:
            answer = exc.answer
            wire.rate_headers(self._limit(None, None, c), answer)
            return self._reply(c, request, answer, None, None, None, "default")
        return endpoint

    def _serve(self, c: _Conn, request: web.BaseRequest, endpoint: str,
               body: bytes | None) -> web.StreamResponse | Coroutine[Any, Any, web.StreamResponse]:
        """The rest of a request once its body is read (None: it was over the vendor's limit): the response, or
        a coroutine giving it when the vendor waits first (tarpit, hang)."""
        wire = self.wire
        api_key: str | None = None
        idem: str | None = None
        mail: Mail | None = None
        try:
            if body is None:
                raise WireError(wire.error(413, "too_large", f"request body is over the {wire.max_body} bytes "
                                                             f"{self.api} accepts"))
            api_key = wire.api_key(request)
            if api_key is None:
                raise WireError(wire.error(401, "no_key", "no API key in the request"))
            if self.spec.auth is not None and api_key != self.spec.auth:
                raise WireError(wire.error(401 if self.api in ("postmark", "mailgun") else 403, "bad_key",
                                           "the API key is not valid"))
            if wire.idempotent:
                idem = request.headers.get("Idempotency-Key")
                if idem is not None and not 1 <= len(idem) <= 256:
                    raise WireError(wire.error(400, "invalid_idempotency_key",
                                               "the Idempotency-Key must be 1-256 characters"))
            mail = wire.parse(endpoint, request, body)
            mail.size = len(body)
            too_many = wire.too_many(mail)
            if too_many is not None:
                raise WireError(too_many)
        except WireError as exc:
            answer = exc.answer
            wire.rate_headers(self._limit(None, api_key, c), answer)
            return self._reply(c, request, answer, mail, api_key, idem, "default")
        return self._decide(c, request, endpoint, body, mail, api_key, idem)

    def _decide(self, c: _Conn, request: web.BaseRequest, endpoint: str, body: bytes, mail: Mail,
                api_key: str | None, idem: str | None,
                ) -> web.StreamResponse | Coroutine[Any, Any, web.StreamResponse]:
        wire = self.wire
        rcpts = mail.rcpts
        per_message = endpoint in wire.per_message
        if self.runtime:
            delay, decider, outcome, detail, limit, daily_passed = self._behave(c, mail, rcpts, api_key,
                                                                                per_message=per_message)
        else:  # no behaviours: accept
            delay, decider, outcome, detail, limit, daily_passed = 0.0, "default", "accept", None, None, ()

        if outcome in ("hang", "reset") or delay:
            held = self._received(c, endpoint, mail, decider)  # the attempt, before the vendor waits or drops it
            if outcome in ("hang", "reset") or (delay and outcome not in ("accept", "blackhole", "lose_response")):
                self._flush(held)
                held = []
        else:
            held = []
        if outcome == "hang":
            self.counts["hung"] += 1
            return self._hang(c)
        if outcome == "reset":
            self._close(c, f"{decider}: connection reset before the response (nothing stored)", reset=True)
            return web.Response(status=204)
        if outcome == "accept" and not delay and idem is None and not per_message and len(mail.messages) == 1:
            return self._accept(c, request, endpoint, mail, api_key, decider, limit, daily_passed)
        if outcome in ("accept", "blackhole", "lose_response"):
            replay = self._replayed(idem, body) if idem is not None else None
            if isinstance(replay, Answer) and replay.status == 409:
                return self._reply(c, request, replay, mail, api_key, idem, "idempotency")
            if replay is not None:
                if outcome == "lose_response":
                    self._flush(held or self._received(c, endpoint, mail, decider))
                    self._close(c, f"{decider}: idempotent replay, connection closed before the response")
                    return web.Response(status=204)
                if delay:
                    self._flush(held)
                    return self._later(delay, c, lambda: self._reply(c, request, replay, mail, api_key, idem,
                                                                     "idempotency", replayed=True), unless=None)
                return self._reply(c, request, replay, mail, api_key, idem, "idempotency", replayed=True)
            # a per-message endpoint (Postmark's batch): a `reject` refuses single messages, the rest is stored
            refused = self._refusals(c, request, mail, api_key, idem) if per_message and self.runtime else None
            stored = mail
            if refused is not None and any(refused):
                stored = Mail([m for m, r in zip(mail.messages, refused, strict=True) if r is None], mail.size)
                rcpts = stored.rcpts
            ids = [wire.message_id(i) for i in range(len(stored.messages))]
            kind = "discarded" if outcome == "blackhole" else "accepted"
            pending = self._store(c, stored, ids, kind, "lost" if outcome == "lose_response" else "sent", decider)
            for i in daily_passed:
                self._daily[i][1] += len(rcpts)
            if stored is mail:
                answer = wire.success(endpoint, mail, ids)
            else:
                assert refused is not None
                pending += [event for _, event in filter(None, refused)]  # each refused message's own reply
                it = iter(ids)
                answer = wire.batch(endpoint, mail, [None if r else next(it) for r in refused],
                                    [r[0] if r else None for r in refused])
            if idem is not None:
                self._idempotency[idem] = (self.clock.now(), body, answer)
            if outcome == "lose_response" or delay:
                self._flush([*held, *pending])  # stored before the connection closes / the tarpit holds the reply
                pending = []
            if outcome == "lose_response":
                self._close(c, f"{decider}: message stored, connection closed before the response")
                return web.Response(status=204)

            def reply() -> web.StreamResponse:
                wire.rate_headers(limit, answer)
                # about the first stored message (no recipient when a batch's messages were all refused)
                return self._reply(c, request, answer, stored, api_key, idem, decider, pending=pending)

            if delay:
                return self._later(delay, c, reply, unless="closed", acked=rcpts if kind == "accepted" else None)
            return reply()
        reply_rcpt = None
        if outcome == "throttle":
            assert limit is not None
            answer = wire.error(429, "throttle", "daily message quota exceeded" if limit.daily
                                else "too many requests", limit=limit)
        elif outcome == "reject":
            reason, reply_rcpt = detail
            answer = wire.error(422, f"reject_{reason}", f"recipient refused ({reason})", rcpt=reply_rcpt)
        else:  # tempfail
            answer = wire.error(500 if detail == 451 else 503, "tempfail", "temporary failure, try again later")

        def refuse() -> web.StreamResponse:
            wire.rate_headers(limit, answer)
            return self._reply(c, request, answer, mail, api_key, idem, decider, rcpt=reply_rcpt)

        if delay:
            return self._later(delay, c, refuse, unless="closed_by")
        return refuse()

    def _accept(self, c: _Conn, request: web.BaseRequest, endpoint: str, mail: Mail, api_key: str | None,
                decider: str, limit: Limit | None, daily_passed: list[int] | tuple[int, ...]) -> web.StreamResponse:
        """The usual request: one message accepted and answered at once, no idempotency key; the general path's
        `_store` and `_reply` without its replays, batch refusals, held attempts and tarpits."""
        wire = self.wire
        ids = [wire.message_id(0)]
        pending = self._store(c, mail, ids, "accepted", "sent", decider)
        for i in daily_passed:
            self._daily[i][1] += len(mail.rcpts)
        answer = wire.success(endpoint, mail, ids)
        wire.rate_headers(limit, answer)
        return self._reply(c, request, answer, mail, api_key, None, decider, pending=pending)

    async def _hang(self, c: _Conn) -> web.StreamResponse:
        """go_dark hang: the request was read; it is never answered (until the connection goes)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        c.waiters.append(waiter)
        await waiter
        return web.Response(status=204)

    async def _later(self, delay: float, c: _Conn, reply: Callable[[], web.StreamResponse], *,
                     unless: str | None, acked: list[str] | None = None) -> web.StreamResponse:
        """A tarpit: `reply()` after `delay` seconds. `unless`: "closed" (no reply once the connection is closing;
        `acked`, the recipients of messages stored before the wait, then get mta.message.ack_lost), "closed_by"
        (no reply once either side has closed it), None (reply whatever happened)."""
        await asyncio.sleep(delay)
        if unless is None:
            return reply()
        if c.by is not None or (unless == "closed" and (c.handler.transport is None
                                                        or c.handler.transport.is_closing())):
            if acked:
                for rcpt in acked:
                    self.recorder.record("mta.message.ack_lost", self.corr_of(rcpt), conn=c.conn, txn=c.txn,
                                         rcpt=rcpt, reason="the client was gone before the response was sent")
                self.counts["acks_lost"] += len(acked)
            return web.Response(status=204)
        return reply()

    def _behave(self, c: _Conn, mail: Mail, rcpts: list[str], api_key: str | None, *, per_message: bool = False,
                ) -> tuple[float, str, str, Any, Limit | None, list[int] | tuple[int, ...]]:
        """Ask the behaviours, in order: (tarpit delay, decider, outcome, detail, rate limit, daily quotas passed).
        `detail`: a reject's (reason, the recipient refused), a tempfail's code. `per_message`: `reject` is not
        asked here but message by message (`_refusals`)."""
        ctx = Context(Verb.DOT, self.clock.now(), c.ip, c.conn, mail.sender, rcpts[0] if rcpts else None, rcpts,
                      api_key)
        delay = 0.0
        decider = "default"
        outcome = "accept"
        detail: Any = None
        limit: Limit | None = None
        daily_passed: list[int] = []
        for i, b in enumerate(self.runtime):
            if per_message and b.kind == "reject":
                continue
            if not b.fires(ctx, self.rng):
                continue
            kind = b.kind
            if kind == "webhook_pause":
                continue  # the webhook dispatcher reads it; a send is answered as if it were not there
            if kind == "tarpit":
                assert isinstance(b.spec, TarpitSpec)
                delay += b.spec.delay_s
                continue
            if kind == "throttle":
                assert isinstance(b, Throttle) and isinstance(b.spec, ThrottleSpec)
                quota = b.spec.daily_quota
                if quota is not None:
                    window = self._daily.setdefault(i, [ctx.now, 0.0])
                    if ctx.now - window[0] >= DAY_S:
                        window[0], window[1] = ctx.now, 0.0
                    if window[1] + len(rcpts) > quota:
                        decider, outcome = b.label, "throttle"
                        limit = Limit(quota, max(0, int(quota - window[1])), DAY_S - (ctx.now - window[0]), True)
                        break
                    daily_passed.append(i)
                over = b.decide(ctx) is not None
                if limit is None:
                    limit = self._bucket_limit(b, ctx)
                if over:
                    decider, outcome = b.label, "throttle"
                    limit = self._bucket_limit(b, ctx)
                    break
                continue
            decider = b.label
            if kind == "accept":
                break
            if kind == "go_dark":
                assert isinstance(b.spec, GoDarkSpec)
                mode = b.spec.mode
                if mode is GoDarkMode.REFUSE:
                    continue  # acts on the listener
                outcome = mode.value
                break
            outcome = kind
            if isinstance(b.spec, RejectSpec):
                detail = (b.spec.reason, self._refused_rcpt(b, rcpts, mail.sender))
            else:
                assert isinstance(b.spec, TempfailSpec)
                detail = b.spec.code
            break
        if limit is None:
            limit = self._limit(None, api_key, c)
        return delay, decider, outcome, detail, limit, daily_passed

    @staticmethod
    def _refused_rcpt(b: Behavior, rcpts: list[str], sender: str | None) -> str | None:
        """The recipient a `reject` refused: the first its `match_rcpt` matches (else the first recipient)."""
        for rcpt in rcpts:
            if b.matches(Context(Verb.RCPT, 0.0, "", 0, sender, rcpt=rcpt)):
                return rcpt
        return rcpts[0] if rcpts else None

    def _refusals(self, c: _Conn, request: web.BaseRequest, mail: Mail, api_key: str | None, idem: str | None,
                  ) -> list[tuple[Answer, tuple[str, str | None, dict[str, Any]]] | None]:
        """Per message of a batch: the vendor's refusal and its mta.reply.sent (the refused recipient's corr, the
        batch's HTTP 200) when a `reject` refuses it, else None. An `accept` listed before the reject that matches
        the message keeps it, as in `_behave`."""
        out: list[tuple[Answer, tuple[str, str | None, dict[str, Any]]] | None] = []
        now = self.clock.now()
        for msg in mail.messages:
            ctx = Context(Verb.DOT, now, c.ip, c.conn, msg.sender, msg.rcpts[0] if msg.rcpts else None, msg.rcpts,
                          api_key)
            refusal = None
            for b in self.runtime:
                if b.kind == "accept" and b.fires(ctx, self.rng):
                    break
                if b.kind == "reject" and b.fires(ctx, self.rng):
                    assert isinstance(b.spec, RejectSpec)
                    reason, rcpt = b.spec.reason, self._refused_rcpt(b, msg.rcpts, msg.sender)
                    answer = self.wire.error(422, f"reject_{reason}", f"recipient refused ({reason})", rcpt=rcpt)
                    refusal = (answer, self._reply_event(c, request, answer, Mail([msg]), api_key, idem, b.label,
                                                         rcpt=rcpt, http_status=200))
                    break
            out.append(refusal)
        return out

    def _replayed(self, idem: str, body: bytes) -> Answer | None:
        hit = self._idempotency.get(idem)
        if hit is None:
            return None
        t, first_body, answer = hit
        if self.clock.now() - t > IDEMPOTENCY_WINDOW_S:
            del self._idempotency[idem]
            return None
        if first_body != body:
            return self.wire.error(409, "invalid_idempotent_request",
                                   "Same idempotency key used with a different request payload")
        return answer

    def _bucket_limit(self, b: Throttle, ctx: Context) -> Limit:
        bucket = b.buckets.get(b._key(ctx))
        tokens = bucket.tokens if bucket is not None else float(b.burst)
        reset_s = 0.0 if tokens >= 1.0 else (1.0 - tokens) / b.rate_per_s
        return Limit(b.burst, max(0, math.floor(tokens)), reset_s)

    def _limit(self, _b: Any, api_key: str | None, c: _Conn) -> Limit | None:
        for b in self.runtime:
            if isinstance(b, Throttle):
                ctx = Context(Verb.DOT, self.clock.now(), c.ip, c.conn, api_key=api_key)
                return self._bucket_limit(b, ctx)
        return None

    def _received(self, c: _Conn, endpoint: str, mail: Mail,
                  decider: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        """mta.request.received, one per recipient: the attempt of a request the vendor holds (tarpit) or never
        answers (go_dark hang, reset, a lost replay), which no reply event would otherwise show."""
        return [(EventKind.MTA_REQUEST_RECEIVED, self.corr_of(rcpt),
                 {"conn": c.conn, "txn": c.txn, "rcpt": rcpt, "api": self.api, "endpoint": endpoint,
                  "behavior": decider}) for rcpt in mail.rcpts]

    def _store(self, c: _Conn, mail: Mail, ids: list[str], kind: str, ack: str,
               decider: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        """The mta.message.accepted (or .discarded) events of a request, one per recipient, to be recorded (by
        `_flush` or with the reply) before any response about them is written."""
        accepted = kind == "accepted"
        event = EventKind.MTA_MESSAGE_ACCEPTED if accepted else EventKind.MTA_MESSAGE_DISCARDED
        conn, txn, size, corr_of = c.conn, c.txn, mail.size, self.corr_of
        reason = None if accepted else f"{decider}: success sent, message never delivered"
        remember = self.messages if accepted and len(self.messages) < MAX_REMEMBERED_MESSAGES else None
        now = self.clock.now() if remember is not None else 0.0
        webhooks = self.webhooks if accepted else None
        items: list[tuple[str, str | None, dict[str, Any]]] = []
        n = 0
        for msg, message_id in zip(mail.messages, ids, strict=True):
            sender = msg.sender
            for rcpt in msg.rcpts:
                if accepted:
                    data: dict[str, Any] = {"conn": conn, "txn": txn, "mail_from": sender, "rcpt": rcpt,
                                            "size_bytes": size, "message_id": message_id, "ack": ack}
                else:
                    data = {"conn": conn, "txn": txn, "mail_from": sender, "rcpt": rcpt, "size_bytes": size,
                            "message_id": message_id, "reason": reason}
                corr = corr_of(rcpt)
                items.append((event, corr, data))
                if webhooks is not None:  # its events follow, from the event loop
                    webhooks.accepted(message_id, rcpt, corr, sender)
            n += len(msg.rcpts)
            if remember is not None and message_id not in remember:
                remember[message_id] = (now, ack, len(msg.rcpts))  # a dict only when looked up
        counts = self.counts
        counts["messages_accepted" if accepted else "messages_discarded"] += n
        if ack == "lost":
            counts["acks_lost"] += n
        return items

    def _flush(self, items: list[tuple[str, str | None, dict[str, Any]]],
               then: Callable[[bool], None] | None = None) -> None:
        """Record `items`; `then(True)` once they are handed to the OS (`then(False)` if that failed)."""
        if self._record_many is not None:
            if then is None:
                self._record_many(items)
            else:
                self._record_many(items, then)
        else:
            for kind, corr, data in items:
                self.recorder.record(kind, corr, **data)
            if then is not None:
                then(True)

    def _flush_waiting(self) -> None:
        """Hand the events waiting for the loop's turn to end to the OS now, and write their replies: before a
        response aiohttp writes itself, which must not overtake them on a connection."""
        flush = getattr(self.recorder, "flush", None)
        if flush is not None:
            flush()

    def _reply(self, c: _Conn, request: web.BaseRequest, answer: Answer, mail: Mail | None, api_key: str | None,
               idem: str | None, decider: str, *, replayed: bool = False, rcpt: str | None = None,
               pending: list[tuple[str, str | None, dict[str, Any]]] | None = None) -> web.StreamResponse:
        """Record the reply's mta.reply.sent (after `pending`, the request's acceptances) and answer. `rcpt`: the
        recipient the reply is about (a refusal's), else the request's first."""
        item = self._reply_event(c, request, answer, mail, api_key, idem, decider, replayed=replayed, rcpt=rcpt,
                                 pending=pending)
        self.counts[_HTTP_COUNT.get(answer.status) or f"http_{answer.status}"] += 1
        response = _response(request, answer)
        if pending:
            pending.append(item)
        else:
            pending = [item]
        # a prebuilt reply is written once its events are handed to the OS (with those of every request served
        # in this turn of the loop, in one write); aiohttp writes any other response after this returns
        self._flush(pending, response.send if isinstance(response, _Prebuilt) else None)
        return response

    def _reply_event(self, c: _Conn, request: web.BaseRequest, answer: Answer, mail: Mail | None,
                     api_key: str | None, idem: str | None, decider: str, *, replayed: bool = False,
                     rcpt: str | None = None, http_status: int | None = None,
                     pending: list[tuple[str, str | None, dict[str, Any]]] | None = None,
                     ) -> tuple[str, str | None, dict[str, Any]]:
        if mail is not None:
            rcpts = mail.rcpts
            if rcpt is None:
                rcpt = rcpts[0] if rcpts else None
            sender = mail.sender
        else:
            rcpts, rcpt, sender = _NO_RCPTS, None, None
        code = answer.code
        self.replies_by_code[code] += 1
        data: dict[str, Any] = {
            "conn": c.conn, "txn": c.txn, "verb": "API", "code": code, "enhanced": ENHANCED.get(code),
            "text": answer.text, "behavior": decider, "closes": False,
            "mail_from": sender, "rcpt": rcpt, "rcpt_count": len(rcpts),
            "api": self.api, "method": request.method, "path": request.path,
            "http_status": answer.status if http_status is None else http_status,
            "error_code": answer.error_code, "api_key": api_key, "idempotency_key": idem,
        }
        if replayed:
            data["replayed"] = True
        if rcpt is None:
            corr = None
        elif pending and pending[0][2]["rcpt"] is rcpt:  # the first acceptance's recipient: its corr is known
            corr = pending[0][1]
        else:
            corr = self.corr_of(rcpt)
        return ("mta.reply.sent", corr, data)

    # --- lookups ---------------------------------------------------------------------------------
    def lookup_message(self, message_id: str) -> dict[str, Any] | None:
        """The delivery status of a message id this vendor accepted (angle brackets optional), or None."""
        key = message_id.strip()
        hit = self.messages.get(key)
        if hit is None:
            key = key.strip("<>")
            hit = self.messages.get(key)
        if hit is None:
            return None
        t_s, ack, rcpts = hit
        return {"message_id": key, "accepted": True, "t_s": t_s, "ack": ack, "rcpts": rcpts}

    def describe(self) -> dict[str, Any]:
        from maildrill.fake_mta.server import behaviors_json

        return {"name": self.name, "api": self.api, "host": self.host, "port": self.port, "base_url": self.base_url,
                "listening": self.listening, "connections_open": len(self._conns),
                "behaviors": json.loads(behaviors_json(self.behaviors)),
                **({"webhooks": {"url": self.webhooks.url or self.spec.webhooks.url,  # type: ignore[union-attr]
                                 "verification_key": self.webhooks.verification_key,
                                 "paused": [m for m, _ in self.webhooks.pauses], "held": len(self.webhooks.held)}}
                   if self.webhooks is not None else {})}
