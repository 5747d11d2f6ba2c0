"""The SUT's queue-depth probe: a Prometheus gauge or a command's number, sampled on an interval, recorded as events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

from maildrill.harness.children import resolve_command
from maildrill.harness.run.sut import http_get
from maildrill.harness.scenario.models import QueueDepthSpec
from maildrill.harness.store import EventWriter

_NUMBER = re.compile(rb"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def prometheus_value(text: str, metric: str) -> float | None:
    """The sum of the samples of `metric` (a name, or a name with its exact label set as written, e.g.
    ``mailer_lane_depth{lane="bulk"}``) in Prometheus text format; None when absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, rest = line.rpartition(" ")
        if not name_labels:
            continue
        name = name_labels.split("{", 1)[0]
        if name_labels == metric or ("{" not in metric and name == metric):
            try:
                total += float(rest)
            except ValueError:
                continue
            found = True
    return total if found else None


def command_value(out: bytes) -> float | None:
    m = _NUMBER.search(out)
    return float(m.group()) if m else None


class QueueDepthProbe:
    """Samples every `interval_s` until cancelled. Failed samples are skipped and logged in sut/probe.log."""

    def __init__(self, spec: QueueDepthSpec, *, writer: EventWriter, base_url: str, log: Path, cwd: Path,
                 env: dict[str, str]) -> None:
        self.spec = spec
        self.writer = writer
        self.url = spec.http if spec.http is None or "://" in spec.http else base_url + spec.http
        self.log = log
        self.cwd = cwd
        self.env = env
        self.samples = 0
        self.failures = 0
        self.zeros_in_a_row = 0  # consecutive samples that read an empty queue

    async def sample(self) -> float | None:
        timeout = max(self.spec.interval_s, 1.0)
        if self.url is not None:
            status, body = await http_get(self.url, timeout)
            if status != 200:
                raise OSError(f"HTTP {status} from {self.url}")
            return prometheus_value(body.decode(errors="replace"), self.spec.metric or "")
        assert self.spec.command is not None
        proc = await asyncio.create_subprocess_exec(
            *resolve_command(self.spec.command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL, cwd=str(self.cwd), env={**os.environ, **self.env})
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return command_value(out)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            try:
                depth = await self.sample()
                if depth is None:
                    raise ValueError("no number in the output" if self.url is None
                                     else f"metric {self.spec.metric!r} not found")
                self.writer.record("sut.queue_depth.sampled", None, depth=depth)
                self.samples += 1
                self.zeros_in_a_row = self.zeros_in_a_row + 1 if depth == 0 else 0
            except (OSError, TimeoutError, ValueError) as exc:
                self.failures += 1
                with contextlib.suppress(OSError), open(self.log, "a", encoding="utf-8") as f:
                    f.write(f"queue_depth sample failed: {type(exc).__name__}: {exc}\n")
            next_t += self.spec.interval_s
            await asyncio.sleep(max(0.0, next_t - loop.time()))  # the sampling period, not a wait for a condition
