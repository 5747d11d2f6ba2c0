"""The mailer's HTTP API (enqueue only, never waits on SMTP), its metrics, and the process lifecycle."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from maildrill.examples.mailer.config import ConfigError, Endpoint, Settings, from_environ
from maildrill.examples.mailer.queue import LANE_NAMES, Kind, MessageQueue, SqliteQueue, State
from maildrill.examples.mailer.transports.webhooks import WebhookError
from maildrill.examples.mailer.transports.webhooks import parse as parse_webhook
from maildrill.examples.mailer.workers import Dispatcher

_EMAIL = re.compile(r"[^@\s<>\"]{1,64}@[A-Za-z0-9.-]{1,253}")
_MAX_BODY = 64 * 1024
_MAX_HOOK_BODY = 4 * 1024 * 1024  # a SendGrid batch can hold many events
_ROUTES = {"/otp": Kind.OTP, "/password-reset": Kind.PASSWORD_RESET, "/newsletter": Kind.NEWSLETTER}


class MailerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # a launch spike opens many connections at once

    def __init__(
        self, address: tuple[str, int], settings: Settings, queue: MessageQueue, dispatcher: Dispatcher
    ) -> None:
        super().__init__(address, Handler)
        self.settings, self.queue, self.dispatcher = settings, queue, dispatcher


class Handler(BaseHTTPRequestHandler):
    server: MailerHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: load generators reuse connections
    server_version = "maildrill-reference-mailer/1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK adds ~40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the SUT log during a spike

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n")

    def _error(self, status: int, error: str, fix: str) -> None:
        self._json(status, {"error": error, "fix": fix})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(200, {"status": "ok", "queue": str(self.server.queue.path)})
        elif path == "/metrics":
            self._send(
                200, render_metrics(self.server.queue, self.server.dispatcher).encode(), "text/plain; version=0.0.4"
            )
        elif m := re.fullmatch(r"/messages/(\d+)", path):
            message = self.server.queue.get(int(m[1]))
            if message is None:
                self._error(404, f"no message {m[1]}", "use the id returned by POST /otp, /password-reset, /newsletter")
            else:
                self._json(
                    200,
                    {
                        "id": message.id,
                        "message_id": message.message_id,
                        "kind": message.kind.value,
                        "email": message.email,
                        "state": message.state.value,
                        "attempts": message.attempts,
                        "vendor": message.vendor,
                        "webhook": self.server.dispatcher.webhook_state.get(message.id),
                    },
                )
        elif path in _ROUTES:
            self._error(405, f"GET {path}: method not allowed", f'POST {path} with JSON {{"email": "..."}}')
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/hooks/"):
            self._hook(path[len("/hooks/") :])
            return
        kind = _ROUTES.get(path)
        if kind is None:
            self._not_found(path)
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            self._error(
                400,
                f"POST {path}: Content-Length {length!r} missing or over {_MAX_BODY} bytes",
                'send a small JSON body like {"email": "u1@users.drill.test"}',
            )
            return
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            self._error(400, f"POST {path}: body is not JSON ({exc})", 'send {"email": "u1@users.drill.test"}')
            return
        email = body.get("email") if isinstance(body, dict) else None
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            self._error(
                400,
                f"POST {path}: 'email' must be an address like u1@users.drill.test, got {email!r}",
                'send {"email": "<local>@<domain>"}',
            )
            return
        settings, dispatcher = self.server.settings, self.server.dispatcher
        message, coalesced = self.server.queue.enqueue(
            kind, email, now=time.time(), cooldown_s=settings.resend_cooldown_s
        )
        dispatcher.count("coalesced" if coalesced else "enqueued")
        if not coalesced:
            dispatcher.notify()
        self._json(202, {"id": message.id, "message_id": message.message_id, "coalesced": coalesced})

    def _hook(self, vendor: str) -> None:
        """A vendor's delivery webhook: update the delivery records by the vendor's message id."""
        dispatcher = self.server.dispatcher
        endpoint = dispatcher.api_endpoints.get(vendor)
        length = self.headers.get("Content-Length", "")
        if endpoint is None:
            self.close_connection = True
            self._error(
                404,
                f"POST /hooks/{vendor}: no API vendor {vendor!r}",
                f"the mailer's API vendors: {sorted(dispatcher.api_endpoints) or 'none'}",
            )
            return
        if not length.isdigit() or int(length) > _MAX_HOOK_BODY:
            self.close_connection = True
            self._error(400, f"POST /hooks/{vendor}: Content-Length {length!r} missing or too large", "send JSON")
            return
        try:
            events = parse_webhook(endpoint.api, self.rfile.read(int(length)))
        except WebhookError as exc:
            self._error(400, f"POST /hooks/{vendor}: not a {endpoint.api} webhook: {exc}", "see the vendor's docs")
            return
        applied = dispatcher.webhook(vendor, events)
        self._json(200, {"events": [{"message": m, "event": e, "result": r} for m, e, r in applied]})

    def _not_found(self, path: str) -> None:
        self._error(404, f"no route {path}", "routes: POST /otp, /password-reset, /newsletter; GET /healthz, /metrics")


def render_metrics(queue: MessageQueue, dispatcher: Dispatcher) -> str:
    """Prometheus text exposition: depth gauges from the queue, counters from the queue and this process."""
    depths = queue.depths()
    pending = {
        lane: sum(n for (state, ln), n in depths.items() if ln == lane and state in (State.QUEUED, State.SENDING))
        for lane in LANE_NAMES
    }
    by_state = {state: sum(n for (st, _), n in depths.items() if st == state) for state in State}
    counters = dict(dispatcher.counters)
    lines = [
        "# HELP mailer_queue_depth Messages not yet sent or failed (queued + being sent).",
        "# TYPE mailer_queue_depth gauge",
        f"mailer_queue_depth {sum(pending.values())}",
        "# HELP mailer_lane_depth Queue depth per priority lane.",
        "# TYPE mailer_lane_depth gauge",
    ]
    lines += [f'mailer_lane_depth{{lane="{name}"}} {pending[lane]}' for lane, name in LANE_NAMES.items()]
    lines += ["# HELP mailer_messages Messages in the queue by state.", "# TYPE mailer_messages gauge"]
    lines += [f'mailer_messages{{state="{state.value}"}} {n}' for state, n in by_state.items()]
    for name, help_text in (
        ("sent", "Messages delivered (by this process)."),
        ("deferred", "Attempts that ended in a retry later (by this process)."),
        ("failed", "Messages given up on: 5xx or out of attempts (by this process)."),
        ("enqueued", "Requests that queued a new message."),
        ("coalesced", "Resend requests coalesced into an existing message."),
        ("paused_retry_after", "429s whose Retry-After / X-RateLimit-Reset paused the vendor's sends."),
        ("held_unknown", "API responses lost mid-request whose message was not re-sent (no idempotency key)."),
    ):
        lines += [
            f"# HELP mailer_{name}_total {help_text}",
            f"# TYPE mailer_{name}_total counter",
            f"mailer_{name}_total {counters.get(name, 0)}",
        ]
    lines += [
        "# HELP mailer_attempts_total Delivery attempts (SMTP or API) by outcome.",
        "# TYPE mailer_attempts_total counter",
    ]
    lines += [
        f'mailer_attempts_total{{outcome="{k[len("attempts_") :]}"}} {v}'
        for k, v in sorted(counters.items())
        if k.startswith("attempts_")
    ]
    return "\n".join(lines) + "\n"


def _where(endpoint: Endpoint) -> str:
    return endpoint.host if endpoint.port == 0 else f"{endpoint.host}:{endpoint.port}"  # an API vendor: its URL


def api_banner(settings: Settings) -> str:
    """The API transports and their policies, for the start-up line (empty on the SMTP path)."""
    eps = [ep for ep in (settings.api_primary, settings.api_backup) if ep is not None]
    if not eps:
        return ""
    return (
        " api="
        + ",".join(f"{ep.name}:{ep.api}@{ep.url}" for ep in eps)
        + f" honour_retry_after={settings.honour_retry_after} api_timeout={settings.api_timeout_s or 'sdk-default'}"
        f" sdk_retries={settings.sdk_retries} idempotency_key={settings.api_idempotency_key}"
        f" hold_unknown={settings.hold_unknown} ignore_late_webhooks={settings.ignore_late_webhooks}"
        f" failover_on_silence={settings.failover_on_silence_s or 'off'}"
    )


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; in-flight sends finish (bounded by the SMTP timeout), then exit 0."""
    queue: MessageQueue
    if settings.redis_url:
        from maildrill.examples.mailer.redisqueue import RedisQueue

        queue = RedisQueue(settings.redis_url, lanes=settings.lanes, prefix=settings.redis_prefix)
    else:
        queue = SqliteQueue(settings.db_path, lanes=settings.lanes)
    recovered = queue.recover_orphans(now=time.time())
    dispatcher = Dispatcher(settings, queue)
    httpd = MailerHTTPServer((settings.host, settings.port), settings, queue, dispatcher)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            dispatcher.stop.set()
            dispatcher.notify()
            # shutdown() waits for serve_forever to return, so it can't run on the serving (main) thread.
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [
        threading.Thread(target=dispatcher.run_worker, name=f"worker-{i}", daemon=True) for i in range(settings.workers)
    ]
    if settings.failover_on_silence_s > 0:
        workers.append(threading.Thread(target=dispatcher.watch_silence, name="silence-watch", daemon=True))
    for worker in workers:
        worker.start()
    if settings.idempotency and not settings.control_url:
        print(
            "mailer: warning: --idempotency without MAILDRILL_CONTROL_URL: an attempt with an unknown outcome "
            "can't be checked with the vendor and will be re-sent",
            file=sys.stderr,
            flush=True,
        )
    host, port = httpd.server_address[:2]
    print(
        f"mailer: listening on http://{host}:{port} queue={queue.path} recovered={recovered} "
        f"profile={settings.profile or '-'} retry={settings.retry.kind.value}:{settings.retry.base_s},"
        f"{settings.retry.cap_s} jitter={settings.jitter.value} retry_5xx={settings.retry_5xx} "
        f"lanes={settings.lanes} pool_backoff={settings.pool_backoff} idempotency={settings.idempotency} "
        f"primary={settings.primary.name}@{_where(settings.primary)} "
        f"backup={settings.backup.name if settings.backup else '-'} time_scale={settings.time_scale} "
        f"seed={settings.seed}"
        + api_banner(settings),
        flush=True,
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        dispatcher.stop.set()
        dispatcher.notify()
        deadline = time.monotonic() + settings.smtp_timeout_s + 5.0
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
        queue.close()
        dispatcher.close()
    print("mailer: stopped", flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    try:
        settings = from_environ(argv)
        return serve(settings)
    except ConfigError as exc:
        print(f"mailer: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mailer: cannot start: {exc}", file=sys.stderr)
        return 3
