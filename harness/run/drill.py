"""The drill orchestrator: fleet, proxy, SUT, Locust and timeline in one AsyncExitStack; always tears down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from maildrill.harness.children import Children
from maildrill.harness.clock import MonotonicClock, origin_env
from maildrill.harness.errors import EXIT_INFRA, EXIT_PASS, MaildrillError
from maildrill.harness.load.plan import LoadPlan
from maildrill.harness.load.process import LocustRun
from maildrill.harness.load.shapes import default_users
from maildrill.harness.netcheck import require_loopback, require_loopback_url
from maildrill.harness.report import write_reports
from maildrill.harness.run.probe import QueueDepthProbe
from maildrill.harness.run.rundir import RunDir, RunStatus, create_run_dir, update_manifest
from maildrill.harness.run.status import StatusDisplay, Tracker, status_line
from maildrill.harness.run.sut import SUT
from maildrill.harness.run.timeline import Timeline
from maildrill.harness.scenario.models import Scenario
from maildrill.harness.scenario.scaling import scaled
from maildrill.harness.store import EventStore, EventWriter

from maildrill.polling import poll_until_async


@dataclass(frozen=True)
class RunOptions:
    seed: int | None = None
    out: Path = Path("reports")
    sut_url: str | None = None
    toxiproxy_url: str | None = None
    allow_remote: bool = False
    workers: int = 0  # 0: one Locust process; N: a master and N local workers
    expect_workers: int = 0  # remote Locust workers (`maildrill worker --master HOST:PORT`) the master waits for
    master_bind: str | None = None  # HOST[:PORT] the Locust master listens on (default 127.0.0.1, any free port)
    worker_wait_s: float = 60.0  # how long the master waits for every worker to join
    quiet: bool = False
    scenario_file: str | None = None
    overrides: tuple[str, ...] = ()  # the --set PATH=VALUE the scenario was loaded with (for the reproduce line)
    stream: TextIO | None = None  # the status display (default stdout)
    cwd: Path | None = None  # where the SUT command runs (default: the current directory)
    reports: bool = True  # call maildrill.harness.report.write_reports at the end when it is installed


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: RunStatus
    reason: str | None
    exit_code: int
    summary: list[str] = field(default_factory=list)


def smtp_env(name: str, host: str, port: int, *, first: bool) -> dict[str, str]:
    key = name.upper().replace("-", "_")
    env = {f"MAILDRILL_SMTP_{key}_HOST": host, f"MAILDRILL_SMTP_{key}_PORT": str(port)}
    if first:
        env |= {"MAILDRILL_SMTP_HOST": host, "MAILDRILL_SMTP_PORT": str(port)}
    return env


def api_env(name: str, url: str, *, first: bool) -> dict[str, str]:
    """A fake email-API vendor's base URL, the string the SUT gives its SDK as host / endpoint_url."""
    env = {f"MAILDRILL_API_{name.upper().replace('-', '_')}_URL": url}
    if first:
        env["MAILDRILL_API_URL"] = url
    return env


def with_address(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (a vendor's base URL as seen through the proxy in front of it)."""
    parts = urlsplit(url)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def reproduce_command(scenario_file: str | None, seed: int, options: RunOptions) -> list[str]:
    cmd = ["maildrill", "run", scenario_file or "SCENARIO.yaml", "--seed", str(seed)]
    for item in options.overrides:
        cmd += ["--set", item]
    if options.workers:
        cmd += ["--workers", str(options.workers)]
    if options.expect_workers:
        cmd += ["--expect-workers", str(options.expect_workers)]
    if options.master_bind:
        cmd += ["--master-bind", options.master_bind]
    if options.sut_url:
        cmd += ["--sut-url", options.sut_url]
    if options.toxiproxy_url:
        cmd += ["--toxiproxy-url", options.toxiproxy_url]
    if options.allow_remote:
        cmd.append("--allow-remote")
    return cmd


class Drill:
    """One run of a scenario. `await drill.run()` returns a RunResult; cancelling it (Ctrl-C) ends it as
    `interrupted` after stopping everything it started."""

    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.options = options
        self.seed = scenario.seed if options.seed is None else options.seed
        self.scenario = scenario.model_copy(update={"seed": self.seed})
        self.runtime = scaled(self.scenario)
        self.probe: QueueDepthProbe | None = None
        self.display = StatusDisplay(options.stream or sys.stdout, quiet=options.quiet)
        self.clock = MonotonicClock()
        self.degraded: list[dict[str, str]] = []
        self.phase = "startup"
        self.interrupted = False
        self.sut_dead = False
        self.rd: RunDir | None = None
        self._watchdog_w: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # --- checks before anything starts ---------------------------------------------------------------
    def _check_targets(self) -> None:
        allow = self.options.allow_remote
        for m in self.scenario.mtas:
            require_loopback(f"fake MTA {m.name!r} host", m.host, allow_remote=allow)
        for v in self.scenario.vendors:
            require_loopback(f"fake vendor {v.name!r} host", v.host, allow_remote=allow)
        if self.options.sut_url or (self.scenario.sut and self.scenario.sut.url):
            require_loopback_url("the SUT at", self.options.sut_url or self.scenario.sut.url or "", allow_remote=allow)
        for c in self.scenario.load.classes:
            if c.smtp is not None and c.smtp.host is not None:
                require_loopback(f"the SMTP target of class {c.name!r}", c.smtp.host, allow_remote=allow)
        if self.options.toxiproxy_url:
            require_loopback_url("Toxiproxy at", self.options.toxiproxy_url, allow_remote=allow)
        if self.options.master_bind:
            require_loopback("the Locust master's --master-bind", self.master_bind[0], allow_remote=allow)

    @property
    def master_bind(self) -> tuple[str, int | None]:
        from maildrill.harness.load.link import parse_host_port

        return parse_host_port(self.options.master_bind or "127.0.0.1", "--master-bind")

    # --- recording -------------------------------------------------------------------------------
    def _degrade(self, component: str, reason: str) -> None:
        self.degraded.append({"component": component, "reason": reason})
        self.run_w.record("run.degraded", None, component=component, reason=reason)
        self.display.say(f"degraded: {component}: {reason}")

    def _phase(self, phase: str, **data: float) -> None:
        self.phase = phase
        self.run_w.record("run.phase.changed", None, phase=phase, **data)

    def _start_watchdog(self, run_dir: Path) -> None:
        r, w = os.pipe()
        try:
            with open(run_dir / "watchdog.log", "ab") as log:  # the child keeps its own copy of the descriptor
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-m", "maildrill.harness.run.watchdog", str(run_dir), str(os.getpid())],
                    stdin=r, stdout=subprocess.DEVNULL, stderr=log,
                    start_new_session=True, env={**os.environ, **origin_env(self.clock)})
        finally:
            os.close(r)
        self._watchdog_w = w

    def _stop_watchdog(self) -> None:
        if self._watchdog_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._watchdog_w, b"done")
                os.close(self._watchdog_w)
            self._watchdog_w = None
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)
            if self._watchdog.stderr:
                self._watchdog.stderr.close()

    # --- the run ---------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        self._check_targets()
        opts = self.options
        rd = self.rd = create_run_dir(opts.out, self.scenario, seed=self.seed, scenario_file=opts.scenario_file,
                                      reproduce=reproduce_command(opts.scenario_file, self.seed, opts))
        self._start_watchdog(rd.path)
        store = EventStore(rd.events)
        self.run_w = store.writer("run", "run", self.clock)
        self.display.say(f"maildrill: drill {self.scenario.name!r} seed {self.seed} → {rd.path}")
        status, reason = RunStatus.COMPLETED, None
        try:
            self.run_w.record("run.started", None, scenario=self.scenario.name, seed=self.seed,
                              time_scale=self.scenario.time_scale)
            self._phase("startup")
            await self._run(rd, store)
        except asyncio.CancelledError:
            status, reason = RunStatus.INTERRUPTED, "interrupted (Ctrl-C / SIGINT); events recorded until then are kept"
        except MaildrillError as exc:
            status, reason = RunStatus.FAILED, str(exc)
        except Exception as exc:  # a bug: still record the run as failed, with the reason
            status, reason = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self.display.done()
        if status is RunStatus.COMPLETED and self.degraded:
            status = RunStatus.DEGRADED
            reason = "; ".join(f"{d['component']}: {d['reason']}" for d in self.degraded)
        self.run_w.record("run.ended", None, status=status.value)
        self.run_w.close()
        update_manifest(rd.path, status=status.value, status_reason=reason, degraded=self.degraded,
                        ended_at=datetime.now(UTC).isoformat(timespec="seconds"))
        self._stop_watchdog()
        return self._finish(rd, status, reason)

    def _finish(self, rd: RunDir, status: RunStatus, reason: str | None) -> RunResult:
        summary: list[str] = []
        exit_code = EXIT_PASS if status in (RunStatus.COMPLETED, RunStatus.DEGRADED) else EXIT_INFRA
        if reason:
            summary.append(f"status: {status.value}: {reason}")
        else:
            summary.append(f"status: {status.value}")
        if self.options.reports and status is not RunStatus.FAILED:
            try:
                verdict = write_reports(rd.path)
                summary += list(verdict.summary_lines())
                if status is not RunStatus.INTERRUPTED:
                    exit_code = int(verdict.exit_code)
            except Exception as exc:
                summary.append(f"report failed: {type(exc).__name__}: {exc}")
                exit_code = EXIT_INFRA
        summary.append(f"run directory: {rd.path}")
        again = reproduce_command(self.options.scenario_file, self.seed, self.options)
        summary.append(f"reproduce: {shlex.join(again)}")
        return RunResult(rd.path, status, reason, exit_code, summary)

    async def _run(self, rd: RunDir, store: EventStore) -> None:
        from maildrill.fake_mta.config import FleetSpec
        from maildrill.fake_mta.fleet import Fleet

        rt, opts = self.runtime, self.options
        children = Children(rd.path)
        mta_w = store.writer("mta", "mta", self.clock)
        proxy_w = store.writer("proxy", "proxy", self.clock)
        sut_w = self.run_w.child("sut")
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(mta_w.close)
            stack.callback(proxy_w.close)
            # last resort: whatever is still running when the stack unwinds is ended by PID
            stack.push_async_callback(lambda: children.stop_all(0.5))
            # fake email-API vendors record beside the MTAs (source mta/<name>, the same event kinds)
            # the SUT's address is known before it starts: vendors' webhooks.url paths resolve against it
            sut = SUT(rt.sut, writer=sut_w, children=children, log_dir=rd.sut, url_override=opts.sut_url,
                      allow_remote=opts.allow_remote, cwd=opts.cwd)
            fleet = Fleet(FleetSpec(mtas=list(rt.mtas), vendors=list(rt.vendors)), recorder=mta_w, clock=self.clock,
                          seed=self.seed, control=True, allow_remote=opts.allow_remote,
                          webhook_base_url=None if sut.absent else sut.base_url)
            await stack.enter_async_context(fleet)
            proxy = await self._proxies(stack, fleet, proxy_w)
            env = {**origin_env(self.clock), "MAILDRILL_RUN_DIR": str(rd.path.resolve()),
                   "MAILDRILL_TIME_SCALE": repr(self.scenario.time_scale),
                   "MAILDRILL_CONTROL_URL": fleet.control_url or "",
                   # the SUT derives its own random draws (retry jitter) from the drill's seed
                   "MAILDRILL_SEED": str(self.seed)}
            for i, m in enumerate(rt.mtas):
                host, port = self.smtp_targets[m.name]
                env |= smtp_env(m.name, host, port, first=i == 0)
            for i, v in enumerate(rt.vendors):
                env |= api_env(v.name, self.api_urls[v.name], first=i == 0)
            stack.push_async_callback(self._stop_child, sut.stop)
            await sut.start(env, on_death=self._sut_died)
            tasks: list[asyncio.Task[None]] = []
            stack.push_async_callback(_cancel_all, tasks)
            if rt.sut is not None and rt.sut.queue_depth is not None:
                probe = QueueDepthProbe(rt.sut.queue_depth, writer=sut_w, base_url=sut.base_url,
                                        log=rd.sut / "probe.log", cwd=opts.cwd or Path.cwd(), env=env)
                tasks.append(asyncio.ensure_future(probe.run()))
                self.probe = probe
            load = rt.load.model_copy(update={"users": rt.load.users or default_users(rt.load.shape)})
            plan = LoadPlan(load=load, duration_s=rt.duration_s, seed=self.seed,
                            sut_url=None if sut.absent else sut.base_url, smtp_host=None if sut.absent else sut.host,
                            smtp_port=None if sut.absent else sut.port, go_file=str((rd.load / "go.json").resolve()),
                            mta_events=str((rd.events / "mta.jsonl").resolve()))
            locust = LocustRun(plan, run_dir=rd.path, children=children, clock=self.clock, workers=opts.workers,
                               expect_remote=opts.expect_workers, master_bind=self.master_bind,
                               worker_wait_s=opts.worker_wait_s, on_degraded=self._degrade)
            stack.push_async_callback(self._stop_child, locust.stop)
            await locust.start()
            if opts.expect_workers:
                self.display.say(f"Locust master at {locust.master_address}: waiting for {opts.expect_workers} "
                                 f"remote worker(s): maildrill worker --master HOST:{locust.master_port}")
            await locust.wait_ready(store)
            timeline = Timeline(list(rt.timeline), writer=self.run_w, clock=self.clock,
                                mtas={m.name: fleet[m.name] for m in rt.mtas}, proxy=proxy,
                                on_degraded=self._degrade, sut=sut,
                                vendors={v.name: fleet[v.name] for v in rt.vendors})
            stack.push_async_callback(timeline.stop)
            # users are spawned and polling: a moment for the go file to reach them (and the master's message, workers)
            t0 = self.clock.now() + (0.5 if locust.distributed else 0.25)
            locust.go(t0)
            timeline.start(t0)
            self._phase("load", load_t0_s=round(t0, 6))
            tracker = Tracker(rd.events)
            tasks.append(asyncio.ensure_future(self._show(tracker, t0, timeline)))
            code = await locust.wait(max(1.0, t0 + rt.duration_s + rt.load.timeout_s + 20 - self.clock.now()))
            if code not in (0, None) and not self.interrupted:
                self._degrade("load", f"Locust exited with code {code}; see {rd.locust}/*.log")
            self._phase("drain")
            await self._drain(tracker, rt.drain_timeout_s)
            self._phase("teardown")
        self.display.done()

    async def _proxies(self, stack: contextlib.AsyncExitStack, fleet: Any, proxy_w: EventWriter) -> Any:
        rt = self.runtime
        self.smtp_targets: dict[str, tuple[str, int]] = {m.name: (fleet[m.name].host, fleet[m.name].port)
                                                         for m in rt.mtas}
        self.api_urls: dict[str, str] = {v.name: fleet[v.name].base_url for v in rt.vendors}
        if not rt.proxies:
            return None
        from maildrill.harness.faults import EmbeddedToxiproxy, ToxiproxyAdapter

        url = self.options.toxiproxy_url
        if url is None:
            srv = await stack.enter_async_context(EmbeddedToxiproxy(host="127.0.0.1", port=0, seed=self.seed))
            url = srv.url
        adapter = ToxiproxyAdapter(url, timeout_s=5.0, recorder=proxy_w)
        await asyncio.to_thread(adapter.version)  # raises ToxiproxyUnreachable with the fix
        for p in rt.proxies:
            up = fleet[p.upstream]
            info = await asyncio.to_thread(adapter.create_proxy, p.name, upstream=f"{up.host}:{up.port}",
                                           listen="127.0.0.1:0")
            if p.upstream in self.api_urls:  # a vendor: its SDK gets the proxy's address in the same URL
                self.api_urls[p.upstream] = with_address(self.api_urls[p.upstream], info.listen_host,
                                                         info.listen_port)
            else:
                self.smtp_targets[p.upstream] = (info.listen_host, info.listen_port)
        if self.options.toxiproxy_url:  # a shared Toxiproxy: leave it as we found it
            stack.push_async_callback(_delete_proxies, adapter, [p.name for p in rt.proxies])
        return adapter

    def _sut_died(self, code: int) -> None:
        self.sut_dead = True
        self._degrade("sut", f"the SUT exited with code {code} during the {self.phase} phase (see its logs in "
                             f"{self.rd.sut if self.rd else 'sut/'})")

    async def _stop_child(self, stop: Callable[[], Any]) -> None:
        # Ctrl-C must end everything within 5 s: shorten every grace period then
        if self.interrupted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stop()), 3.0)
        else:
            await stop()

    async def _show(self, tracker: Tracker, t0: float, timeline: Timeline) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            now = self.clock.now()
            snap = tracker.poll(now)
            self.display.show(status_line(snap, phase=self.phase, elapsed_s=now - t0,
                                          faults=list(timeline.active.values())))
            next_t += 1.0
            await asyncio.sleep(max(0.0, next_t - loop.time()))  # the display period

    async def _drain(self, tracker: Tracker, timeout_s: float) -> None:
        """Until every requested message was delivered, or the SUT's own queue probe read empty twice in a row
        during the drain (what is not delivered by then never will be: bounced, given up), or timeout_s, or
        the SUT died."""
        probe = self.probe
        probed_before = probe.samples if probe is not None else 0

        def drained() -> bool:
            if self.sut_dead:
                return True
            snap = tracker.poll(self.clock.now())
            if snap.outstanding == 0:
                return True
            if probe is not None and probe.samples - probed_before >= 2 and probe.zeros_in_a_row >= 2:
                self.run_w.record("run.drain.ended", None, reason="sut_queue_empty", outstanding=snap.outstanding)
                return True
            return False

        with contextlib.suppress(TimeoutError):  # what is still outstanding then is reported as such
            await poll_until_async(drained, timeout_s, what="the drain", interval_s=0.1)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background tasks (queue probe, status line) and wait until each has ended. A cancellation
    can be lost: Python 3.11's asyncio.wait_for returns the inner result when the inner await completes in the
    same loop turn as the cancel, and the probe's loop then samples on forever (a drill hung in teardown, about
    1 run in 30 on a loaded machine). So cancel again until the task is done, instead of awaiting it once."""
    for t in tasks:
        while not t.done():
            t.cancel()
            await asyncio.wait({t}, timeout=1.0)
        if not t.cancelled():
            with contextlib.suppress(Exception):
                t.result()  # retrieved, so asyncio does not log "exception was never retrieved"


async def _delete_proxies(adapter: Any, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(adapter.delete_proxy, name)


def run_drill(scenario: Scenario, options: RunOptions) -> RunResult:
    """Run a drill to the end on a fresh event loop. SIGINT/SIGTERM end it as `interrupted` (within 5 s)."""

    async def main() -> RunResult:
        drill = Drill(scenario, options)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            if not drill.interrupted:
                drill.interrupted = True
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupt)
        try:
            return await drill.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    from maildrill.harness import aio

    return aio.run(main())
