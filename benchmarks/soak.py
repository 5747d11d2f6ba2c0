"""Soak: many messages through one fake MTA (`maildrill mta --events DIR`) at its top rate, then through the
embedded fault proxy (`maildrill proxy`) in front of a fresh one, sampling each server process's RSS.

    .venv/bin/python benchmarks/soak.py                                  # 500,000 messages per leg
    .venv/bin/python benchmarks/soak.py --messages 50000 --per-min 60000 # shorter, paced to 1,000/s
    .venv/bin/python benchmarks/soak.py --legs mta                       # only the direct leg

The client is asyncio in this process: `--sessions` SMTP connections, each sending message after message
(MAIL, RCPT, DATA with a unique Message-ID, so the fake MTA's delivery-status index is exercised; RSET-free
transactions on one connection, as a relay's connection cache does). `--per-min` caps the rate (default: as
fast as the server answers). Prints RSS (VmRSS from /proc) over time per server process, whether it stays
flat within 20 % after the warm-up (the first `--warmup` fraction of the messages, which must cover the
fake MTA's Message-ID index filling up: 100,000 by default), and the event bytes written per message.
Exit 1 when a leg's RSS is not flat. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAT = 0.20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    """A maildrill subprocess; `lines` holds its stdout up to the line matching `ready`."""

    def __init__(self, cmd: list[str], ready: str) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if re.search(ready, line):
                return
        raise RuntimeError(f"{cmd} did not start: {self.lines} {self.proc.stderr.read() if self.proc.stderr else ''}")

    def find(self, pattern: str) -> re.Match[str]:
        for line in self.lines:
            m = re.search(pattern, line)
            if m:
                return m
        raise RuntimeError(f"no line matching {pattern!r} in {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@dataclass
class Leg:
    name: str
    watched: dict[str, int]  # label -> pid
    samples: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)  # (sent, t_s, rss by label)


async def session(host: str, port: int, ids: range, progress: list[int], pace: asyncio.Semaphore | None) -> None:
    reader, writer = await asyncio.open_connection(host, port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                return line

    assert (await reply()).startswith(b"220")
    writer.write(b"EHLO soak.drill.test\r\n")
    assert (await reply()).startswith(b"250")
    for k in ids:
        if pace is not None:
            await pace.acquire()
        # pipelined (RFC 2920): MAIL, RCPT and DATA in one write, then their three replies
        writer.write(b"MAIL FROM:<soak@app.drill.test>\r\nRCPT TO:<u%d@users.drill.test>\r\nDATA\r\n" % k)
        for want in (b"250", b"250", b"354"):
            got = await reply()
            if not got.startswith(want):
                raise RuntimeError(f"message {k}: expected {want!r}, got {got!r}")
        writer.write(b"Message-ID: <soak-%d@app.drill.test>\r\nSubject: soak\r\n\r\n%s\r\n.\r\n"
                     % (k, b"x" * 200))
        got = await reply()
        if not got.startswith(b"250"):
            raise RuntimeError(f"message {k}: expected 250 after the dot, got {got!r}")
        progress[0] += 1
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def drive(leg: Leg, host: str, port: int, messages: int, sessions: int, per_min: float | None,
                samples: int) -> float:
    progress = [0]
    pace = asyncio.Semaphore(0) if per_min else None
    per = -(-messages // sessions)
    tasks = [asyncio.ensure_future(session(host, port, range(i * per, min(messages, (i + 1) * per)), progress, pace))
             for i in range(sessions)]
    started = time.monotonic()
    every = max(1, messages // samples)
    next_sample = 0
    released = 0
    while True:
        done = all(t.done() for t in tasks)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        now = time.monotonic() - started
        if pace is not None:  # release tokens up to the allowed count
            allowed = min(messages, int(now * per_min / 60.0) + sessions)
            for _ in range(allowed - released):
                pace.release()
            released = max(released, allowed)
        if progress[0] >= next_sample or done:
            leg.samples.append((progress[0], now, {k: rss_mb(p) for k, p in leg.watched.items()}))
            print(f"  {leg.name}: {progress[0]} sent at {now:.0f} s, RSS "
                  + ", ".join(f"{k} {v:.1f} MB" for k, v in leg.samples[-1][2].items()), flush=True)
            next_sample += every
        if done:
            return time.monotonic() - started
        await asyncio.sleep(0.05)  # the sampling period (and the pacing tick)


def verdict(leg: Leg, warmup: float, messages: int) -> tuple[bool, list[str]]:
    lines = []
    ok = True
    after = [s for s in leg.samples if s[0] >= warmup * messages]
    for label in leg.watched:
        values = [s[2][label] for s in after]
        base = values[0]
        lo, hi = min(values), max(values)
        flat = hi <= base * (1 + FLAT) and lo >= base * (1 - FLAT)
        ok &= flat
        first = leg.samples[0][2][label]
        lines.append(f"  {label}: RSS {first:.1f} MB at start, {base:.1f} MB after the warm-up "
                     f"({int(warmup * 100)} % of messages), then {lo:.1f}-{hi:.1f} MB "
                     f"(max {100 * (hi / base - 1):+.1f} %): {'FLAT' if flat else 'NOT FLAT'} within 20 %")
    return ok, lines


def run(coro: Any) -> Any:
    """uvloop when installed (the client should not be what limits the rate), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500_000, help="messages per leg (default 500,000)")
    ap.add_argument("--per-min", type=float, help="messages per minute cap (default: the server's top rate)")
    ap.add_argument("--sessions", type=int, default=8, help="concurrent SMTP connections (default 8)")
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of messages before RSS must be flat")
    ap.add_argument("--samples", type=int, default=20, help="RSS samples per leg (default 20)")
    ap.add_argument("--legs", nargs="+", choices=["mta", "proxy"], default=["mta", "proxy"],
                    help="which legs, in this order (default: mta proxy)")
    args = ap.parse_args()
    py = sys.executable
    base = Path(tempfile.mkdtemp(prefix="maildrill-soak-"))
    print(f"soak: {args.messages} messages per leg, {args.sessions} sessions, rate "
          f"{'top' if not args.per_min else f'{args.per_min:g}/min'}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine)", flush=True)
    all_flat = True
    for name in args.legs:
        events = base / name / "events"
        mta = Server([py, "-m", "maildrill", "mta", "--port", "0", "--events", str(events)], r"ready")
        proxy = None
        try:
            mta_port = int(mta.find(r"smtp://127\.0\.0\.1:(\d+)")[1])
            target = mta_port
            watched = {"fake MTA": mta.proc.pid}
            if name == "proxy":
                proxy = Server([py, "-m", "maildrill", "proxy", "--port", "0"], r"ready")
                api = proxy.find(r"(http://127\.0\.0\.1:\d+)")[1]
                req = urllib.request.Request(api + "/proxies", method="POST", data=json.dumps(
                    {"name": "soak", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{mta_port}"}).encode())
                with urllib.request.urlopen(req, timeout=30) as resp:
                    target = int(json.load(resp)["listen"].rsplit(":", 1)[1])
                watched["embedded proxy"] = proxy.proc.pid
            leg = Leg("direct to the fake MTA" if name == "mta" else "through the embedded proxy", watched)
            took = run(drive(leg, "127.0.0.1", target, args.messages, args.sessions, args.per_min, args.samples))
        finally:
            if proxy is not None:
                proxy.stop()
            mta.stop()
        event_bytes = sum(f.stat().st_size for f in events.glob("*.jsonl"))
        print(f"\n## {leg.name}: {args.messages} messages in {took:.0f} s ({args.messages / took:.0f} msg/s)")
        print(f"  {'messages':>9} {'t_s':>7} " + " ".join(f"{k + ' MB':>18}" for k in watched))
        for sent, t, rss in leg.samples:
            print(f"  {sent:>9} {t:>7.1f} " + " ".join(f"{rss[k]:>18.1f}" for k in watched))
        flat, lines = verdict(leg, args.warmup, args.messages)
        all_flat &= flat
        print("\n".join(lines))
        print(f"  events: {event_bytes / 1e6:.1f} MB on disk, {event_bytes / args.messages:.0f} bytes per message",
              flush=True)
        for f in events.glob("*.jsonl"):
            f.unlink()
    shutil.rmtree(base, ignore_errors=True)
    print("\nRSS flat within 20 % after the warm-up on every leg" if all_flat else "\nRSS NOT flat on some leg")
    return 0 if all_flat else 1


if __name__ == "__main__":
    sys.exit(main())
