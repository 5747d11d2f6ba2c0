"""The locustfile every drill runs (the only module that imports locust; it runs in the Locust subprocess only).

Configured by the plan file named in ``MAILDRILL_LOAD_PLAN`` (maildrill.harness.load.plan). Users are request
slots: each takes the next due job from this process's Dispatcher, waits for its due time (open-model
pacing, so the achieved rate follows the shape whatever the response times) and makes the request.
Every request is recorded as one ``load.request.completed`` event on the run's shared clock.
"""

from __future__ import annotations

import json
import os
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import gevent
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.runners import MasterRunner
from maildrill.harness.clock import clock_from_env
from maildrill.harness.load.plan import (
    PLAN_ENV,
    WORKER_COUNT_ENV,
    WORKER_INDEX_ENV,
    Dispatcher,
    Job,
    LoadPlan,
    render,
    render_json,
    template_values,
)
from maildrill.harness.store import EventWriter

PLAN = LoadPlan.read(os.environ[PLAN_ENV])
CLOCK = clock_from_env()
INDEX = int(os.environ.get(WORKER_INDEX_ENV, "0"))
COUNT = int(os.environ.get(WORKER_COUNT_ENV, "1"))
USERS = PLAN.load.users or 4
STARTUP_TIMEOUT_S = 120.0  # no go signal by then: the harness is gone; stop
_POLL_S = 0.005


class _State:
    dispatcher = Dispatcher(PLAN, index=INDEX, count=COUNT)
    writer: EventWriter | None = None
    t0_s: float | None = None  # run-clock time of load second 0, from the go file
    started = False
    master = False
    tail_offset = 0


def _writer() -> EventWriter:
    if _State.writer is None:
        run_events = Path(PLAN.go_file).parent.parent / "events"
        _State.writer = EventWriter(run_events / f"load-{os.getpid()}.jsonl", f"load/{INDEX}", CLOCK)
    return _State.writer


def _go_t0() -> float | None:
    if _State.t0_s is None:
        try:
            _State.t0_s = float(json.loads(Path(PLAN.go_file).read_text())["t0_s"])
        except (OSError, ValueError, KeyError):
            return None
    return _State.t0_s


def _poll_deliveries() -> None:
    """Tail the fake MTAs' event file for accepted messages (the patience model's "did the user get it?")."""
    try:
        with open(PLAN.mta_events, "rb") as f:
            f.seek(_State.tail_offset)
            chunk = f.read()
    except OSError:
        return
    end = chunk.rfind(b"\n") + 1
    _State.tail_offset += end
    for line in chunk[:end].splitlines():
        if b'"mta.message.accepted"' in line:
            try:
                corr = json.loads(line).get("corr")
            except ValueError:
                continue
            if corr:
                _State.dispatcher.mark_delivered(corr)


@events.init.add_listener
def _init(environment: object, **_: object) -> None:
    _State.master = isinstance(getattr(environment, "runner", None), MasterRunner)


@events.spawning_complete.add_listener
def _ready(user_count: int, **_: object) -> None:
    if _State.master or _State.started:  # the master runs no users: the workers record
        return
    _State.started = True
    _writer().record("load.started", None, worker=INDEX, pid=os.getpid(), users=user_count,
                     planned=len(_State.dispatcher))


@events.quitting.add_listener
def _quitting(environment: object, **_: object) -> None:
    if _State.master or _State.writer is None:
        return
    _State.writer.record("load.stopped", None, worker=INDEX, pid=os.getpid(),
                         skipped_resends=_State.dispatcher.skipped_resends)


def _wait_until(t_run_s: float) -> None:
    while True:
        left = t_run_s - CLOCK.now()
        if left <= 0:
            return
        gevent.sleep(min(left, 0.05))


class DrillUser(FastHttpUser):
    wait_time = constant(0)
    host = PLAN.sut_url or "http://127.0.0.1"
    network_timeout = PLAN.load.timeout_s
    connection_timeout = PLAN.load.timeout_s

    @task
    def next_request(self) -> None:
        t0 = _go_t0()
        if t0 is None:
            gevent.sleep(_POLL_S * 4)
            return
        due = _State.dispatcher.peek_due()
        if due is None:
            gevent.sleep(0.05)
            return
        if due > 0 and PLAN.needs_deliveries:
            # learn deliveries before deciding whether a resend is still needed
            _wait_until(t0 + due - 0.05)
            _poll_deliveries()
        job = _State.dispatcher.take()
        if job is None:
            return
        _wait_until(t0 + job.due_s)
        if job.cls.smtp is not None:
            self._smtp(job)
        else:
            self._http(job)

    def _http(self, job: Job) -> None:
        spec = job.cls.request
        assert spec is not None
        values = template_values(PLAN, job)
        path = render(spec.path, values)
        kwargs: dict[str, object] = {"headers": {k: render(v, values) for k, v in spec.headers.items()}}
        if spec.json_ is not None:
            kwargs["json"] = render_json(spec.json_, values)
        elif spec.body is not None:
            kwargs["data"] = render(spec.body, values)
        started = CLOCK.now()
        status, error = 0, ""
        try:
            with self.client.request(spec.method, path, name=job.cls.name, catch_response=True, **kwargs) as resp:
                status = int(resp.status_code or 0)
                if status in spec.ok_status:
                    resp.success()
                else:
                    error = f"HTTP {status}" if status else str(resp.error or "connection error")[:200]
                    resp.failure(error)
        except Exception as exc:  # FastHttpUser surfaces socket errors in resp.error; anything else lands here
            error = f"{type(exc).__name__}: {exc}"[:200]
        self._record(job, spec.method, path, status, status in spec.ok_status, started, error)

    def _smtp(self, job: Job) -> None:
        spec = job.cls.smtp
        assert spec is not None
        values = template_values(PLAN, job)
        host = spec.host or PLAN.smtp_host or "127.0.0.1"
        port = spec.port or PLAN.smtp_port or 25
        msg = EmailMessage()
        msg["From"] = render(spec.mail_from, values)
        msg["To"] = values["recipient"]
        msg["Subject"] = render(spec.subject, values)
        msg.set_content(render(spec.body, values))
        started = CLOCK.now()
        status, error = 0, ""
        t = time.perf_counter()
        try:
            with smtplib.SMTP(host, port, timeout=PLAN.load.timeout_s) as s:
                refused = s.send_message(msg)
                status = 250 if not refused else next(iter(refused.values()))[0]
        except smtplib.SMTPResponseException as exc:
            status, error = exc.smtp_code, str(exc.smtp_error[:200])
        except smtplib.SMTPRecipientsRefused as exc:
            status = next(iter(exc.recipients.values()))[0]
            error = "recipient refused"
        except (OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        ok = 200 <= status < 300
        self.environment.events.request.fire(
            request_type="SMTP", name=job.cls.name, response_time=(time.perf_counter() - t) * 1000,
            response_length=0, exception=None if ok else RuntimeError(error or f"SMTP {status}"), context={})
        self._record(job, "SMTP", "smtp", status, ok, started, error)

    def _record(self, job: Job, method: str, target: str, status: int, ok: bool, started: float, error: str) -> None:
        now = CLOCK.now()
        _writer().record("load.request.completed", job.corr, **{
            "class": job.cls.name, "user": job.user, "resend": job.resend, "method": method, "target": target,
            "status": status, "ok": ok, "latency_ms": round((now - started) * 1000, 3),
            "started_t_s": round(started, 6), "scheduled_t_s": round((_State.t0_s or 0.0) + job.due_s, 6),
            "error": error or None})


class DrillShape(LoadTestShape):
    """A constant pool of request slots for as long as the load phase lasts; pacing does the shaping."""

    def tick(self) -> tuple[int, float] | None:
        t0 = _go_t0()
        if t0 is None:
            return (USERS, USERS * 10.0) if self.get_run_time() < STARTUP_TIMEOUT_S else None
        if CLOCK.now() >= t0 + PLAN.duration_s:
            return None
        return (USERS, USERS * 10.0)
