"""Locust as subprocesses: one headless standalone process, or a master with local and/or remote workers.

Distributed, the master runs here, next to the run directory (it reads the plan and the go file and writes
every worker's events); the workers get everything over Locust's master/worker channel
(maildrill.harness.load.link), so the local ones are started with no maildrill variable in their environment,
exactly like a remote `maildrill worker --master HOST:PORT`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maildrill.fake_mta.net import free_port
from maildrill.harness.children import Child, Children
from maildrill.harness.clock import MonotonicClock, origin_env
from maildrill.harness.errors import InfrastructureError
from maildrill.harness.events import Event
from maildrill.harness.load import link
from maildrill.harness.load.plan import PLAN_ENV, LoadPlan
from maildrill.harness.store import EventStore, ReadProblem, _Tail

from maildrill.polling import poll_until_async

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_TIMEOUT_S = 90.0
DEFAULT_MASTER_PORT = 5557  # Locust's own default, when remote workers are expected
Degrade = Callable[[str, str], None]


def worker_env(environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """The environment a worker process gets: the caller's minus every maildrill variable (a worker needs none)."""
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in env.items() if not k.startswith("MAILDRILL_")}


def worker_command(master_host: str, master_port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", master_host,
            "--master-port", str(master_port), *extra]


class LocustRun:
    """Starts Locust on a plan, tells it when load second 0 is, and ends it (by PID) at its deadline."""

    def __init__(self, plan: LoadPlan, *, run_dir: Path, children: Children, clock: MonotonicClock,
                 workers: int = 0, expect_remote: int = 0, master_bind: tuple[str, int | None] | None = None,
                 worker_wait_s: float = 60.0, on_degraded: Degrade | None = None) -> None:
        self.plan = plan
        self.run_dir = run_dir
        self.children = children
        self.clock = clock
        self.workers = workers
        self.expect_remote = expect_remote
        self.distributed = workers > 0 or expect_remote > 0
        host, port = master_bind or ("127.0.0.1", None)
        self.master_host = host
        self.master_port = port or (DEFAULT_MASTER_PORT if expect_remote else 0)
        self.worker_wait_s = worker_wait_s
        self.on_degraded = on_degraded
        # absolute: Locust runs in <run>/locust, and `--out` may be relative (the default is reports/)
        self.plan_file = (run_dir / "load" / "plan.json").resolve()
        self.main: Child | None = None
        self.worker_children: list[Child] = []
        self._watches: list[asyncio.Task[None]] = []
        self._master_tail = _Tail(run_dir / "events" / "load-master.jsonl")
        self._master_problems: list[ReadProblem] = []
        self.roster_size = 1

    @property
    def expected(self) -> int:
        return self.workers + self.expect_remote

    @property
    def master_address(self) -> str:
        return f"{self.master_host}:{self.master_port}"

    def _args(self) -> list[str]:
        log_dir = self.run_dir / "locust"
        # the whole run: startup + load phase + the slowest request + margin; the harness also kills at its deadline
        run_time = int(STARTUP_TIMEOUT_S + self.worker_wait_s + self.plan.duration_s + self.plan.load.timeout_s + 30)
        return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--csv", str(log_dir / "stats"),
                "--csv-full-history", "--run-time", f"{run_time}s",
                "--stop-timeout", str(int(self.plan.load.timeout_s + 2)), "--only-summary", "--loglevel", "WARNING",
                "--exit-code-on-error", "0"]

    def _env(self) -> dict[str, str]:
        return {**os.environ, **origin_env(self.clock), PLAN_ENV: str(self.plan_file), "PYTHONUNBUFFERED": "1",
                link.EXPECT_ENV: str(max(self.expected, 1)), link.WAIT_ENV: repr(float(self.worker_wait_s))}

    async def start(self) -> None:
        self.plan_file.write_text(self.plan.to_json(), encoding="utf-8")
        cwd = self.run_dir / "locust"
        cwd.mkdir(parents=True, exist_ok=True)
        if not self.distributed:
            self.main = await self.children.spawn("locust", self._args(), env=self._env(), cwd=cwd,
                                                  stdout=cwd / "locust.out.log", stderr=cwd / "locust.log")
            return
        if not self.master_port:
            self.master_port = free_port()
        master = [*self._args(), "--master", "--master-bind-host", self.master_host,
                  "--master-bind-port", str(self.master_port)]
        self.main = await self.children.spawn("locust-master", master, env=self._env(), cwd=cwd,
                                              stdout=cwd / "master.out.log", stderr=cwd / "master.log")
        connect = "127.0.0.1" if self.master_host in ("0.0.0.0", "::", "") else self.master_host
        for i in range(self.workers):
            env = {**worker_env(), link.INDEX_HINT_ENV: str(i), "PYTHONUNBUFFERED": "1"}
            child = await self.children.spawn(f"locust-worker-{i}", worker_command(connect, self.master_port,
                                                                                   "--loglevel", "WARNING"),
                                              env=env, cwd=cwd, stdout=cwd / f"worker-{i}.out.log",
                                              stderr=cwd / f"worker-{i}.log")
            self.worker_children.append(child)
            self._watches.append(asyncio.ensure_future(self._watch(f"load/worker-{i}", child)))

    async def _watch(self, name: str, child: Child) -> None:
        code = await child.wait()
        if not child.stopping and self.on_degraded is not None and code != 0:
            self.on_degraded(name, f"Locust worker exited with code {code} mid-run; its share of the load was not sent")

    def _master_events(self) -> list[Event]:
        return self._master_tail.poll(self._master_problems, final=False)

    def _dead(self) -> list[Child]:
        return [c for c in [self.main, *self.worker_children] if c is not None and c.returncode is not None]

    def _fail(self, why: str, ready: int, want: int) -> InfrastructureError:
        return InfrastructureError(f"Locust did not start: {why} ({ready}/{want} processes ready); "
                                   f"see {self.run_dir / 'locust'}/*.log")

    async def wait_ready(self, store: EventStore) -> None:
        """Until every user-running process has spawned its users (load.started). Raises InfrastructureError.
        Distributed: first until the master fixed its roster (every expected worker joined, or the wait for
        them ran out with at least one: then the run is degraded, saying how many came)."""
        want = 1
        if self.distributed:
            joined = 0
            armed: Event | None = None
            waiting_since: float | None = None  # when the master began waiting for workers
            away: list[str] = []  # workers the master turned away, with why
            nobody = f"no Locust worker joined the master at {self.master_address} within {self.worker_wait_s:g} s"

            def failed(why: str) -> InfrastructureError:
                turned = f"; turned away: {'; '.join(away)}" if away else ""
                return self._fail(f"{why} (expected {self.expected} workers: {self.workers} local, "
                                  f"{self.expect_remote} remote{turned})", joined, self.expected)

            def roster_fixed() -> Event | None:
                nonlocal joined, armed, waiting_since
                for e in self._master_events():
                    if e.kind == "load.master.started":
                        waiting_since = time.monotonic()
                    elif e.kind == "load.worker.joined":
                        joined += 1
                    elif e.kind == "load.worker.turned_away":
                        away.append(f"{e.get('worker_host')}:{e.get('worker_pid')} {e.get('reason')}")
                    elif e.kind == "load.armed":
                        armed = e
                if armed is not None:
                    return armed
                if self.main is not None and self.main.returncode is not None:
                    raise failed(f"the Locust master exited with code {self.main.returncode}")
                if joined == 0 and waiting_since is not None and (
                        time.monotonic() >= waiting_since + self.worker_wait_s + 1.0):  # +1: a hello under way
                    raise failed(nobody)
                return None

            armed = await poll_until_async(
                roster_fixed, STARTUP_TIMEOUT_S + self.worker_wait_s, interval_s=0.05,
                error=lambda: failed(nobody if joined == 0
                                     else f"not ready after {STARTUP_TIMEOUT_S + self.worker_wait_s:g} s"))
            want = self.roster_size = int(armed["workers"])
            if want < self.expected and self.on_degraded is not None:
                self.on_degraded("load", f"{self.expected} Locust workers expected, {want} joined the master at "
                                         f"{self.master_address} within {self.worker_wait_s:g} s; the load was "
                                         f"split among the {want} that did (roster {armed.get('roster')})"
                                         + (f"; turned away: {'; '.join(away)}" if away else ""))
            self._watches.append(asyncio.ensure_future(self._watch_master()))
        follower = store.follow()
        started: set[tuple[str, Any]] = set()

        def all_started() -> bool:
            started.update((e.source, e.get("pid")) for e in follower.poll() if e.kind == "load.started")
            if len(started) >= want:
                return True
            dead = self._dead()
            if dead:
                raise self._fail(f"{dead[0].name} exited with code {dead[0].returncode}", len(started), want)
            return False

        await poll_until_async(all_started, STARTUP_TIMEOUT_S, interval_s=0.05, error=lambda: self._fail(
            f"not ready after {STARTUP_TIMEOUT_S:g} s", len(started), want))

    async def _watch_master(self) -> None:
        """Workers the master lost mid-run (a remote one that died or was cut off) degrade the run; a local
        one's exit is reported by its own watch, with its exit code."""
        local = {c.pid for c in self.worker_children}
        me = socket.gethostname()
        while True:
            for e in self._master_events():
                if e.kind != "load.worker.lost" or self.on_degraded is None:
                    continue
                if e.get("worker_host") == me and e.get("worker_pid") in local:
                    continue
                self.on_degraded(f"load/worker-{e['worker']}",
                                 f"Locust worker {e.get('worker_host')}:{e.get('worker_pid')} {e.get('reason')} "
                                 "mid-run; its share of the load was not sent")
            await asyncio.sleep(0.2)  # the poll interval of a watch that lasts the run

    def go(self, t0_s: float) -> None:
        """Load second 0 is run-clock `t0_s` (written atomically; the process(es) next to the run directory poll
        it; the master hands it on to its workers)."""
        tmp = Path(self.plan.go_file + ".tmp")
        tmp.write_text(json.dumps({"t0_s": t0_s}), encoding="utf-8")
        os.replace(tmp, self.plan.go_file)

    async def wait(self, timeout_s: float) -> int | None:
        """Until Locust (the master) exits by itself, at most `timeout_s`; then it is ended by PID."""
        assert self.main is not None
        try:
            return await asyncio.wait_for(self.main.wait(), timeout_s)
        except TimeoutError:
            return await self.main.stop(2.0)

    async def stop(self) -> None:
        for t in self._watches:
            t.cancel()
        children = [c for c in [self.main, *self.worker_children] if c is not None]
        await asyncio.gather(*(c.stop(3.0) for c in children), return_exceptions=True)
