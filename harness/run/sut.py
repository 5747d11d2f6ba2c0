"""The system under test: a subprocess with the drill's environment (or a URL); readiness, death watch, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from maildrill.fake_mta.net import free_port
from maildrill.harness.children import Child, Children, resolve_command
from maildrill.harness.errors import SUTFailed
from maildrill.harness.netcheck import require_loopback
from maildrill.harness.scenario.models import SUTSpec
from maildrill.harness.store import EventWriter

from maildrill.polling import poll_until_async


async def http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET (for readiness and Prometheus probes). Raises OSError / TimeoutError."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read(4 * 1024 * 1024)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise OSError(f"not an HTTP response from {url}")
        return int(status_line[1]), body

    return await asyncio.wait_for(go(), timeout_s)


class SUT:
    """The SUT of one drill. `base_url` is where HTTP load goes; `port` is MAILDRILL_SUT_PORT."""

    def __init__(self, spec: SUTSpec | None, *, writer: EventWriter, children: Children, log_dir: Path,
                 url_override: str | None = None, allow_remote: bool = False, cwd: Path | None = None) -> None:
        self.spec = spec or SUTSpec()
        self.writer = writer
        self.children = children
        self.log_dir = log_dir
        self.cwd = cwd or Path.cwd()
        self.child: Child | None = None
        self.died: asyncio.Future[int] | None = None
        url = url_override or self.spec.url
        self.absent = url is None and self.spec.command is None  # no SUT: SMTP classes name their own target
        self.external = url is not None or self.absent
        if url is not None:
            parts = urlsplit(url)
            host = parts.hostname or ""
            require_loopback("the SUT at", host, allow_remote=allow_remote)
            self.host = host
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
            self.base_url = url.rstrip("/")
        else:
            self.host = "127.0.0.1"
            self.port = free_port()
            self.base_url = f"http://127.0.0.1:{self.port}"

    async def start(self, env: Mapping[str, str], *, on_death: Callable[[int], None]) -> None:
        """Start the command (if any) and wait until it is ready. Raises SUTFailed with the reason and stderr tail."""
        if self.external:  # --sut-url / sut.url: someone else runs it; only check it answers
            await self._wait_ready(None)
            return
        cmd = resolve_command(self.spec.command)
        full_env = {**os.environ, **self.spec.env, **env, "MAILDRILL_SUT_PORT": str(self.port)}
        self._launch = (cmd, full_env, on_death)
        await self._spawn(restart=False)

    async def _spawn(self, *, restart: bool) -> None:
        cmd, full_env, on_death = self._launch
        try:
            self.child = await self.children.spawn("sut", cmd, env=full_env, cwd=self.cwd,
                                                   stdout=self.log_dir / "stdout.log",
                                                   stderr=self.log_dir / "stderr.log")
        except OSError as exc:
            raise SUTFailed(f"could not start the SUT {cmd[0]!r} ({exc.strerror or exc}); check sut.command "
                            "(the program must exist; `python` means maildrill's own interpreter)") from None
        self.writer.record("sut.started", None, pid=self.child.pid, command=" ".join(cmd), port=self.port,
                           restart=restart)
        started = time.monotonic()
        await self._wait_ready(self.child)
        self.writer.record("sut.ready", None, after_s=round(time.monotonic() - started, 3))
        self.died = asyncio.ensure_future(self._watch(self.child, on_death))

    async def crash(self) -> None:
        """kill -9 of the SUT's process group (a `sut: crash` timeline action): the crash is the drill, so it
        does not degrade the run. Only a SUT maildrill started can be crashed."""
        child = self.child
        if self.external or child is None:
            raise SUTFailed("the SUT was not started by maildrill (sut.url / --sut-url): it cannot be crashed")
        if child.returncode is not None:
            raise SUTFailed(f"the SUT had already exited (code {child.returncode})")
        child.stopping = True  # its watcher must not report an unexpected death
        if self.died is not None:
            self.died.cancel()
        child.signal_group(signal.SIGKILL)
        code = await child.wait()
        child.signal_group(signal.SIGKILL)  # stragglers of its group (a worker it had forked)
        child.close_logs()
        self.writer.record("sut.crashed", None, pid=child.pid, code=code)

    async def restart(self) -> None:
        """Start the SUT again after a crash: same command, environment and port; waits until it is ready."""
        if self.child is not None and self.child.returncode is None:
            return  # it is running
        await self._spawn(restart=True)

    async def _watch(self, child: Child, on_death: Callable[[int], None]) -> int:
        code = await child.wait()
        if not child.stopping:
            self.writer.record("sut.exited", None, code=code, expected=False)
            on_death(code)
        return code

    def _stderr_tail(self) -> str:
        try:
            lines = (self.log_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return ""
        return ("; its stderr ends: " + " | ".join(lines)) if lines else ""

    async def _wait_ready(self, child: Child | None) -> None:
        ready = self.spec.ready
        mode = "http" if ready.http else ("tcp" if ready.tcp is not False else "none")
        if mode == "none" or self.absent:
            return
        last = "no answer yet"

        async def answers() -> bool:
            nonlocal last
            if child is not None and child.returncode is not None:
                raise SUTFailed(f"the SUT exited with code {child.returncode} before it was ready "
                                f"(see {self.log_dir}/stderr.log){self._stderr_tail()}")
            try:
                if mode == "http":
                    status, _ = await http_get(self.base_url + (ready.http or "/"), 2.0)
                    if 200 <= status < 300:
                        return True
                    last = f"HTTP {status}"
                else:
                    _, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2.0)
                    w.close()
                    return True
            except (OSError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            return False

        def not_ready() -> SUTFailed:
            what = f"GET {self.base_url}{ready.http}" if mode == "http" else f"TCP {self.host}:{self.port}"
            started = "listen on $MAILDRILL_SUT_PORT" if self.spec.command else "be running"
            return SUTFailed(f"the SUT was not ready after {ready.timeout_s:g} s ({what}: {last}). It must "
                             f"{started}; raise sut.ready.timeout_s if it starts slowly{self._stderr_tail()}")

        await poll_until_async(answers, ready.timeout_s, interval_s=0.05, error=not_ready)

    async def stop(self) -> None:
        if self.died is not None:
            self.died.cancel()
        if self.child is not None and self.child.returncode is None:
            code = await self.child.stop(self.spec.stop_grace_s)
            self.writer.record("sut.exited", None, code=code, expected=True)
        elif self.child is not None:
            await self.child.stop(self.spec.stop_grace_s)  # its group's stragglers, its log files
