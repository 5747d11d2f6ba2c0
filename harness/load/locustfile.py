"""The locustfile every drill runs (the only module that imports locust; it runs in Locust processes only).

Three roles, chosen by the Locust runner this process gets:

* **one process** (`maildrill run` without `--workers`): reads the plan file named in ``MAILDRILL_LOAD_PLAN``,
  waits for load second 0 in the go file, writes its events into the run directory itself and tails the fake
  MTAs' event file for the patience model.
* **master** (on the harness machine, next to the run directory): reads the same plan and go file, but runs
  no users. It hands the plan, the clock, each worker's share and load second 0 to the workers over Locust's
  master/worker channel, relays deliveries to the worker that sent each need, and writes the workers'
  events into the run directory (``events/load-<index>.jsonl``; its own in ``load-master.jsonl``).
* **worker** (anywhere that reaches the master and the SUT): needs no run directory and no environment
  variable; everything comes from the master (maildrill.harness.load.link describes the messages).

Users are request slots: each takes the next due job from this process's Dispatcher, waits for its due time
(open-model pacing, so the achieved rate follows the shape whatever the response times) and makes the
request. Every request is one ``load.request.completed`` event on the run's clock.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.rpc import Message
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from maildrill.harness.clock import clock_from_env
from maildrill.harness.events import Event
from maildrill.harness.load import link
from maildrill.harness.load.plan import PLAN_ENV, Dispatcher, Job, LoadPlan, render, render_json, template_values
from maildrill.harness.store import EventWriter

PLAN_FILE = os.environ.get(PLAN_ENV)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maildrill")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


CLOCK = clock_from_env()  # a worker re-bases it on the master's run clock (the clock handshake)
STARTUP_TIMEOUT_S = 120.0  # no go signal by then: the harness is gone; stop
_POLL_S = 0.005
_FLUSH_S = 0.1  # a worker sends its request events to the master this often (or every _FLUSH_N events)
_FLUSH_N = 500
_DELIVERY_POLL_S = 0.01  # the master tails the fake MTAs' events this often when users are patient
_LATE_S = 1.0  # a worker takes no job after load second duration + this (the shape's tick, as in one process)
_VERSION = _version()  # master and workers must run the same maildrill


class _State:
    role = "local"  # "local" | "master" | "worker"
    plan: LoadPlan | None = LoadPlan.read(PLAN_FILE) if PLAN_FILE else None
    dispatcher: Dispatcher | None = None
    writer: EventWriter | None = None
    t0_s: float | None = None  # run-clock time of load second 0
    started = False
    tail_offset = 0
    # worker side
    env: Any = None
    sync = link.ClockSync()
    index = 0
    count = 1
    outbox: list[list[Any]] = []
    inflight = 0
    spawned = False
    ready_sent = False
    done_sent = False


def _users() -> int:
    plan = _State.plan
    return (plan.load.users or 4) if plan is not None else 0


# --- recording ---------------------------------------------------------------------------------------------
def _writer() -> EventWriter:
    if _State.writer is None:
        assert _State.plan is not None
        run_events = Path(_State.plan.go_file).parent.parent / "events"
        _State.writer = EventWriter(run_events / f"load-{os.getpid()}.jsonl", "load/0", CLOCK)
    return _State.writer


def _emit(kind: str, corr: str | None, **data: Any) -> None:
    if _State.role == "worker":
        _State.outbox.append([round(CLOCK.now(), 6), kind, corr, data])
        if len(_State.outbox) >= _FLUSH_N:
            _flush()
    else:
        _writer().record(kind, corr, **data)


def _flush() -> None:
    if _State.outbox and _State.env is not None:
        batch, _State.outbox = _State.outbox, []
        _State.env.runner.send_message(link.EVENTS, batch)


def _go_t0() -> float | None:
    if _State.t0_s is None and _State.role != "worker" and _State.plan is not None:
        try:
            _State.t0_s = float(json.loads(Path(_State.plan.go_file).read_text())["t0_s"])
        except (OSError, ValueError, KeyError):
            return None
    return _State.t0_s


def _poll_deliveries() -> list[str]:
    """New accepted messages in the fake MTAs' event file (the patience model's "did the user get it?")."""
    assert _State.plan is not None
    try:
        with open(_State.plan.mta_events, "rb") as f:
            f.seek(_State.tail_offset)
            chunk = f.read()
    except OSError:
        return []
    end = chunk.rfind(b"\n") + 1
    _State.tail_offset += end
    out = []
    for line in chunk[:end].splitlines():
        if b'"mta.message.accepted"' in line:
            try:
                corr = json.loads(line).get("corr")
            except ValueError:
                continue
            if corr:
                out.append(corr)
    return out


# --- the master ----------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, client_id: str, hello: dict[str, Any], t_s: float) -> None:
        self.client_id = client_id
        self.host = str(hello.get("host", "?"))
        self.pid = int(hello.get("pid", 0))
        self.hint = hello.get("index")
        self.joined_t_s = t_s
        self.clock = hello.get("clock") or {}
        self.index: int | None = None
        self.writer: EventWriter | None = None
        self.state = "joined"  # joined -> assigned -> ready -> done | lost

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"


class _Master:
    workers: dict[str, _Worker] = {}
    writer: EventWriter | None = None
    armed = False
    users = 0
    go_sent = False
    wait_s = float(os.environ.get(link.WAIT_ENV, "60"))


def _master_writer() -> EventWriter:
    if _Master.writer is None:
        assert _State.plan is not None
        run_events = Path(_State.plan.go_file).parent.parent / "events"
        _Master.writer = EventWriter(run_events / "load-master.jsonl", "load/master", CLOCK)
    return _Master.writer


def _on_ping(environment: Any, msg: Any, **_: Any) -> None:
    environment.runner.send_message(link.PONG, {"w": msg.data["w"], "m": CLOCK.now()}, client_id=msg.node_id)


def _on_hello(environment: Any, msg: Any, **_: Any) -> None:
    if msg.node_id in _Master.workers:
        return
    w = _Worker(msg.node_id, dict(msg.data or {}), CLOCK.now())
    theirs = (msg.data or {}).get("version")
    why = ("joined after the roster was fixed" if _Master.armed
           else f"runs maildrill {theirs}, the master {_VERSION}: install the same version on every machine"
           if theirs != _VERSION else None)
    if why is not None:  # this one gets no share; it is asked to quit (Locust's own message)
        _master_writer().record("load.worker.turned_away", None, worker_host=w.host, worker_pid=w.pid, reason=why)
        environment.runner.server.send_to_client(Message("quit", None, msg.node_id))
        return
    _Master.workers[msg.node_id] = w
    _master_writer().record("load.worker.joined", None, worker_host=w.host, worker_pid=w.pid,
                            joined=len(_Master.workers), **{k: v for k, v in w.clock.items() if k.startswith("clock")})
    assert _State.plan is not None
    environment.runner.send_message(link.PLAN, {"plan": _State.plan.to_json()}, client_id=msg.node_id)


def _roster_worker(msg: Any) -> _Worker | None:
    w = _Master.workers.get(msg.node_id)
    return w if w is not None and w.index is not None else None


def _on_ready(environment: Any, msg: Any, **_: Any) -> None:
    w = _roster_worker(msg)
    if w is None or w.writer is None or w.state != "assigned":
        return
    w.state = "ready"
    d = dict(msg.data or {})
    w.writer.record("load.started", None, worker=w.index, pid=w.pid, host=w.host, users=int(d.get("users", 0)),
                    planned=int(d.get("planned", 0)),
                    **{k: v for k, v in (d.get("clock") or {}).items() if k.startswith("clock")})


def _on_events(environment: Any, msg: Any, **_: Any) -> None:
    w = _roster_worker(msg)
    if w is None or w.writer is None:
        return
    source = w.writer.source
    w.writer.write_many(Event(float(t_s), source, kind, corr, data) for t_s, kind, corr, data in msg.data
                        if kind == "load.request.completed")


def _on_done(environment: Any, msg: Any, **_: Any) -> None:
    w = _roster_worker(msg)
    if w is None or w.writer is None or w.state in ("done", "lost"):
        return
    w.state = "done"
    d = dict(msg.data or {})
    w.writer.record("load.stopped", None, worker=w.index, pid=w.pid, host=w.host,
                    skipped_resends=int(d.get("skipped_resends", 0)),
                    **{k: v for k, v in (d.get("clock") or {}).items() if k.startswith("clock")})


def _arm(environment: Any, expected: int) -> None:
    roster = list(_Master.workers.values())
    indices = link.assign_indices([(w.client_id, w.hint if isinstance(w.hint, int) else None) for w in roster])
    assert _State.plan is not None
    run_events = Path(_State.plan.go_file).parent.parent / "events"
    count = len(roster)
    for w in roster:
        w.index = indices[w.client_id]
        w.writer = EventWriter(run_events / f"load-{w.index}.jsonl", f"load/{w.index}", CLOCK)
        w.state = "assigned"
        environment.runner.send_message(link.ASSIGN, {"index": w.index, "count": count}, client_id=w.client_id)
    _Master.users = max(_users(), count)  # every worker gets at least one request slot
    _Master.armed = True
    _master_writer().record("load.armed", None, workers=count, expected=expected, users=_Master.users,
                            roster=",".join(f"{w.index}={w.name}" for w in sorted(roster, key=lambda w: w.index or 0)))


def _master_loop(environment: Any) -> None:
    assert _State.plan is not None
    plan = _State.plan
    expected = max(1, int(os.environ.get(link.EXPECT_ENV, "1")))
    wait_s = _Master.wait_s
    began = CLOCK.now()
    _master_writer().record("load.master.started", None, expected=expected, worker_wait_s=wait_s,
                            clock_origin_s=round(CLOCK.origin, 6), pid=os.getpid())
    while not _Master.armed:
        n = len(_Master.workers)
        if n >= expected or (n > 0 and CLOCK.now() - began >= wait_s):
            _arm(environment, expected)
            break
        gevent.sleep(0.02)
    while _go_t0() is None:
        gevent.sleep(0.02)
    for w in _Master.workers.values():
        if w.index is not None:
            environment.runner.send_message(link.GO, {"t0_s": _State.t0_s}, client_id=w.client_id)
    _Master.go_sent = True
    count = sum(1 for w in _Master.workers.values() if w.index is not None)
    while True:
        if plan.needs_deliveries:
            per: dict[int, list[str]] = {}
            for corr in _poll_deliveries():
                i = link.owner_of(corr, count)
                if i is not None:
                    per.setdefault(i, []).append(corr)
            for w in _Master.workers.values():
                if w.index in per and w.state not in ("done", "lost"):
                    environment.runner.send_message(link.DELIVERED, per[w.index], client_id=w.client_id)
        for w in _Master.workers.values():
            if w.index is None or w.state in ("done", "lost"):
                continue
            client = environment.runner.clients.get(w.client_id)
            why = None
            if client is None:
                why = "disconnected from the Locust master before it had sent its share"
            elif client.state == STATE_MISSING:
                why = "stopped answering the Locust master (no heartbeat for 3 s)"
            if why is not None:
                w.state = "lost"
                _master_writer().record("load.worker.lost", None, worker=w.index, worker_host=w.host,
                                        worker_pid=w.pid, reason=why)
        gevent.sleep(_DELIVERY_POLL_S if plan.needs_deliveries else 0.05)


def _master_finished() -> bool:
    roster = [w for w in _Master.workers.values() if w.index is not None]
    return bool(roster) and all(w.state in ("done", "lost") for w in roster)


# --- a worker ------------------------------------------------------------------------------------------------
class _Ping:
    waiting: dict[float, gevent.event.AsyncResult] = {}


def _on_pong(environment: Any, msg: Any, **_: Any) -> None:
    received = time.monotonic()
    w = float(msg.data["w"])
    _State.sync.add(w, float(msg.data["m"]), received)
    best = _State.sync.best()
    assert best is not None
    CLOCK.origin = best.origin
    got = _Ping.waiting.pop(w, None)
    if got is not None:
        got.set(True)


def _ping(environment: Any, timeout_s: float = 5.0) -> bool:
    sent = time.monotonic()
    got = gevent.event.AsyncResult()
    _Ping.waiting[sent] = got
    environment.runner.send_message(link.PING, {"w": sent})
    try:
        return bool(got.get(timeout=timeout_s))
    except gevent.Timeout:
        _Ping.waiting.pop(sent, None)
        return False


def _on_plan(environment: Any, msg: Any, **_: Any) -> None:
    plan = LoadPlan.from_json(msg.data["plan"])
    _State.plan = plan
    DrillUser.host = plan.sut_url or "http://127.0.0.1"
    DrillUser.network_timeout = DrillUser.connection_timeout = plan.load.timeout_s


def _on_assign(environment: Any, msg: Any, **_: Any) -> None:
    assert _State.plan is not None
    _State.index, _State.count = int(msg.data["index"]), int(msg.data["count"])
    _State.dispatcher = Dispatcher(_State.plan, index=_State.index, count=_State.count)


def _on_go(environment: Any, msg: Any, **_: Any) -> None:
    _State.t0_s = float(msg.data["t0_s"])


def _on_delivered(environment: Any, msg: Any, **_: Any) -> None:
    if _State.dispatcher is not None:
        for corr in msg.data:
            _State.dispatcher.mark_delivered(corr)


def _worker_loop(environment: Any) -> None:
    for _ in range(link.HANDSHAKE_PINGS):
        _ping(environment)
    hint = os.environ.get(link.INDEX_HINT_ENV)
    environment.runner.send_message(link.HELLO, {
        "host": socket.gethostname(), "pid": os.getpid(), "index": int(hint) if hint and hint.isdigit() else None,
        "version": _VERSION,
        "clock": _State.sync.stats()})
    last_ping = last_flush = time.monotonic()
    while not _State.done_sent:
        now = time.monotonic()
        if now - last_ping >= link.RESYNC_S:
            last_ping = now
            gevent.spawn(_ping, environment)
        if now - last_flush >= _FLUSH_S:
            last_flush = now
            _flush()
        d = _State.dispatcher
        if d is not None and not _State.ready_sent and _State.spawned and environment.runner.user_count > 0:
            _State.ready_sent = True
            environment.runner.send_message(link.READY, {
                "users": environment.runner.user_count, "planned": len(d), "clock": _State.sync.stats()})
        t0 = _State.t0_s
        if d is not None and t0 is not None and _State.plan is not None and _State.inflight == 0 and (
                d.exhausted() or CLOCK.now() >= t0 + _State.plan.duration_s + _LATE_S):
            _flush()
            _State.done_sent = True
            environment.runner.send_message(link.DONE, {"skipped_resends": d.skipped_resends,
                                                        "clock": _State.sync.stats()})
        gevent.sleep(0.02)


# --- Locust hooks ---------------------------------------------------------------------------------------------
@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    runner = getattr(environment, "runner", None)
    if isinstance(runner, MasterRunner):
        if _State.plan is None:
            raise SystemExit(f"maildrill's Locust master needs the load plan ({PLAN_ENV}); start drills with "
                             "`maildrill run`, which starts the master")
        _State.role = "master"
        for kind, handler in ((link.PING, _on_ping), (link.HELLO, _on_hello), (link.READY, _on_ready),
                              (link.EVENTS, _on_events), (link.DONE, _on_done)):
            runner.register_message(kind, handler)
        gevent.spawn(_master_loop, environment)
    elif isinstance(runner, WorkerRunner):
        _State.role = "worker"
        _State.env = environment
        _State.plan = None  # from the master, whatever this host's environment says
        for kind, handler in ((link.PONG, _on_pong), (link.PLAN, _on_plan), (link.ASSIGN, _on_assign),
                              (link.GO, _on_go), (link.DELIVERED, _on_delivered)):
            runner.register_message(kind, handler)
        gevent.spawn(_worker_loop, environment)
    else:
        if _State.plan is None:
            raise SystemExit(f"maildrill's locustfile needs the load plan ({PLAN_ENV}) when run as one process")
        _State.dispatcher = Dispatcher(_State.plan)


@events.spawning_complete.add_listener
def _ready(user_count: int, **_: Any) -> None:
    if _State.role == "worker":
        _State.spawned = user_count > 0
        return
    if _State.role == "master" or _State.started or _State.dispatcher is None:
        return
    _State.started = True
    _writer().record("load.started", None, worker=0, pid=os.getpid(), users=user_count,
                     planned=len(_State.dispatcher))


@events.quitting.add_listener
def _quitting(environment: Any, **_: Any) -> None:
    if _State.role != "local" or _State.writer is None or _State.dispatcher is None:
        return
    _State.writer.record("load.stopped", None, worker=0, pid=os.getpid(),
                         skipped_resends=_State.dispatcher.skipped_resends)


def _wait_until(t_run_s: float) -> None:
    while True:
        left = t_run_s - CLOCK.now()
        if left <= 0:
            return
        gevent.sleep(min(left, 0.05))


class DrillUser(FastHttpUser):
    wait_time = constant(0)
    host = (_State.plan.sut_url if _State.plan else None) or "http://127.0.0.1"  # a worker's comes with the plan
    network_timeout = _State.plan.load.timeout_s if _State.plan else 60.0
    connection_timeout = network_timeout

    @task
    def next_request(self) -> None:
        t0 = _go_t0()
        d, plan = _State.dispatcher, _State.plan
        if t0 is None or d is None or plan is None:
            gevent.sleep(_POLL_S * 4)
            return
        due = d.peek_due()
        if due is None or (_State.role == "worker" and CLOCK.now() >= t0 + plan.duration_s + _LATE_S):
            gevent.sleep(0.05)
            return
        if due > 0 and plan.needs_deliveries:
            # learn deliveries before deciding whether a resend is still needed
            _wait_until(t0 + due - 0.05)
            if _State.role == "local":
                for corr in _poll_deliveries():
                    d.mark_delivered(corr)
        job = d.take()
        if job is None:
            return
        _State.inflight += 1
        try:
            _wait_until(t0 + job.due_s)
            if job.cls.smtp is not None:
                self._smtp(job)
            else:
                self._http(job)
        finally:
            _State.inflight -= 1

    def _http(self, job: Job) -> None:
        spec = job.cls.request
        assert spec is not None and _State.plan is not None
        values = template_values(_State.plan, job)
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
        plan = _State.plan
        assert spec is not None and plan is not None
        values = template_values(plan, job)
        host = spec.host or plan.smtp_host or "127.0.0.1"
        port = spec.port or plan.smtp_port or 25
        msg = EmailMessage()
        msg["From"] = render(spec.mail_from, values)
        msg["To"] = values["recipient"]
        msg["Subject"] = render(spec.subject, values)
        msg.set_content(render(spec.body, values))
        started = CLOCK.now()
        status, error = 0, ""
        t = time.perf_counter()
        try:
            with smtplib.SMTP(host, port, timeout=plan.load.timeout_s) as s:
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
        _emit("load.request.completed", job.corr, **{
            "class": job.cls.name, "user": job.user, "resend": job.resend, "method": method, "target": target,
            "status": status, "ok": ok, "latency_ms": round((now - started) * 1000, 3),
            "started_t_s": round(started, 6), "scheduled_t_s": round((_State.t0_s or 0.0) + job.due_s, 6),
            "error": error or None})


class DrillShape(LoadTestShape):
    """A constant pool of request slots for as long as the load phase lasts; pacing does the shaping.
    Distributed, the master holds zero users until the roster is fixed, and stops when every worker of it
    said it is done (or was lost), so no request event is still on its way when Locust quits."""

    def tick(self) -> tuple[int, float] | None:
        plan = _State.plan
        assert plan is not None
        if _State.role == "master":
            if not _Master.armed:
                return (0, 1.0) if self.get_run_time() < STARTUP_TIMEOUT_S + _Master.wait_s else None
            t0 = _go_t0()
            if t0 is None:
                return (_Master.users, _Master.users * 10.0) if self.get_run_time() < STARTUP_TIMEOUT_S else None
            if _master_finished() or CLOCK.now() >= t0 + plan.duration_s + plan.load.timeout_s + 15:
                return None
            return (_Master.users, _Master.users * 10.0)
        users = _users()
        t0 = _go_t0()
        if t0 is None:
            return (users, users * 10.0) if self.get_run_time() < STARTUP_TIMEOUT_S else None
        if CLOCK.now() >= t0 + plan.duration_s:
            return None
        return (users, users * 10.0)
