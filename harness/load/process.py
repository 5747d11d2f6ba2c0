"""Locust as subprocesses: one headless standalone process, or a master and N workers (`--workers N`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from maildrill.fake_mta.net import free_port
from maildrill.harness.children import Child, Children
from maildrill.harness.clock import MonotonicClock, origin_env
from maildrill.harness.errors import InfrastructureError
from maildrill.harness.load.plan import PLAN_ENV, WORKER_COUNT_ENV, WORKER_INDEX_ENV, LoadPlan
from maildrill.harness.store import EventStore

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_TIMEOUT_S = 90.0


class LocustRun:
    """Starts Locust on a plan, tells it when load second 0 is, and ends it (by PID) at its deadline."""

    def __init__(self, plan: LoadPlan, *, run_dir: Path, children: Children, clock: MonotonicClock,
                 workers: int = 0, on_worker_death: Callable[[str, int], None] | None = None) -> None:
        self.plan = plan
        self.run_dir = run_dir
        self.children = children
        self.clock = clock
        self.workers = workers
        self.on_worker_death = on_worker_death
        # absolute: Locust runs in <run>/locust, and `--out` may be relative (the default is reports/)
        self.plan_file = (run_dir / "load" / "plan.json").resolve()
        self.main: Child | None = None
        self.worker_children: list[Child] = []
        self._watches: list[asyncio.Task[None]] = []

    def _args(self) -> list[str]:
        log_dir = self.run_dir / "locust"
        # the whole run: startup + load phase + the slowest request + margin; the harness also kills at its deadline
        run_time = int(STARTUP_TIMEOUT_S + self.plan.duration_s + self.plan.load.timeout_s + 30)
        return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--csv", str(log_dir / "stats"),
                "--csv-full-history", "--run-time", f"{run_time}s",
                "--stop-timeout", str(int(self.plan.load.timeout_s + 2)), "--only-summary", "--loglevel", "WARNING",
                "--exit-code-on-error", "0"]

    def _env(self, index: int, count: int) -> dict[str, str]:
        return {**os.environ, **origin_env(self.clock), PLAN_ENV: str(self.plan_file),
                WORKER_INDEX_ENV: str(index), WORKER_COUNT_ENV: str(count), "PYTHONUNBUFFERED": "1"}

    async def start(self) -> None:
        self.plan_file.write_text(self.plan.to_json(), encoding="utf-8")
        cwd = self.run_dir / "locust"
        cwd.mkdir(parents=True, exist_ok=True)
        if self.workers <= 0:
            self.main = await self.children.spawn("locust", self._args(), env=self._env(0, 1), cwd=cwd,
                                                  stdout=cwd / "locust.out.log", stderr=cwd / "locust.log")
            return
        port = free_port()
        master = [*self._args(), "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                  "--expect-workers", str(self.workers), "--expect-workers-max-wait", str(int(STARTUP_TIMEOUT_S))]
        self.main = await self.children.spawn("locust-master", master, env=self._env(0, self.workers), cwd=cwd,
                                              stdout=cwd / "master.out.log", stderr=cwd / "master.log")
        for i in range(self.workers):
            args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
                    "--master-port", str(port), "--loglevel", "WARNING"]
            child = await self.children.spawn(f"locust-worker-{i}", args, env=self._env(i, self.workers), cwd=cwd,
                                              stdout=cwd / f"worker-{i}.out.log", stderr=cwd / f"worker-{i}.log")
            self.worker_children.append(child)
            self._watches.append(asyncio.ensure_future(self._watch(f"load/worker-{i}", child)))

    async def _watch(self, name: str, child: Child) -> None:
        code = await child.wait()
        if not child.stopping and self.on_worker_death is not None and code != 0:
            self.on_worker_death(name, code)

    async def wait_ready(self, store: EventStore) -> None:
        """Until every user-running process has spawned its users (load.started). Raises InfrastructureError."""
        want = max(self.workers, 1)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        follower = store.follow()
        while True:
            started = {e.get("pid") for e in follower.poll() if e.kind == "load.started"}
            if len(started) >= want:
                return
            dead = [c for c in [self.main, *self.worker_children] if c is not None and c.returncode is not None]
            if dead or time.monotonic() >= deadline:
                why = (f"{dead[0].name} exited with code {dead[0].returncode}" if dead
                       else f"not ready after {STARTUP_TIMEOUT_S:g} s")
                raise InfrastructureError(f"Locust did not start: {why} ({len(started)}/{want} processes ready); "
                                          f"see {self.run_dir / 'locust'}/*.log")
            await asyncio.sleep(0.05)  # poll interval of a deadline-bounded wait

    def go(self, t0_s: float) -> None:
        """Load second 0 is run-clock `t0_s` (written atomically; every user and the shape poll it)."""
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
