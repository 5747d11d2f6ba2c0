"""SMTP throughput of the fake MTA against a bare aiosmtpd sink and Postfix's smtp-sink, all driven by smtp-source.

Needs Postfix's `smtp-source` and `smtp-sink` (Debian/Ubuntu: ``apt-get install postfix``, or ``make
system-deps``). Every server runs in its own process; each is checked to be listening (banner read)
before it is measured, and the benchmark exits 3 if one is not (a dead port would "measure" nothing).

    .venv/bin/python benchmarks/mta_throughput.py [--messages 5000] [--sessions 1 20] [--processes 2]

Prints msgs/s per server and session count, and the ratios the targets are stated in:
fake MTA >= 0.85x the bare aiosmtpd sink; a --processes N fleet closer to smtp-sink than one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RCPT = "u000001@users.drill.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 20.0) -> None:
    """Fail loudly unless the server answers with a 220 greeting."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"FATAL: {what} exited with code {proc.returncode} before listening: {err.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                banner = s.recv(512)
                s.sendall(b"QUIT\r\n")
            if banner.startswith(b"220"):
                return
            last = f"banner {banner[:60]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)  # polling a deadline-bounded readiness check
    raise SystemExit(f"FATAL: {what} is not listening on 127.0.0.1:{port} ({last})")


def serve_bare(port: int) -> None:
    """The baseline: aiosmtpd's SMTP with a handler that returns 250, nothing recorded."""
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Sink(), hostname="bare.test"), "127.0.0.1", port,
                                          backlog=1024)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    events_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        wait_banner(self.port, self.proc, self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def drive(port: int, sessions: int, messages: int) -> float:
    """msgs/s for smtp-source sending `messages` 1 KiB messages over `sessions` parallel sessions."""
    cmd = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", "1024", "-f", "sender@app.drill.test",
           "-t", RCPT, f"127.0.0.1:{port}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"FATAL: smtp-source failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return messages / elapsed


def count_accepted(events_dir: Path) -> int:
    n = 0
    for path in events_dir.glob("*.jsonl"):
        with open(path, "rb") as f:
            n += sum(1 for line in f if b'"mta.message.accepted"' in line)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=4000, help="messages per run (default 4000)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--processes", type=int, default=2, help="processes of the scaled-out fleet (default 2)")
    ap.add_argument("--serve", choices=["bare"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve == "bare":
        serve_bare(args.port)
        return 0
    for tool in ("smtp-source", "smtp-sink"):
        if shutil.which(tool) is None:
            print(f"FATAL: `{tool}` not found. Install Postfix's tools: apt-get install postfix (or make system-deps)",
                  file=sys.stderr)
            return 3
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-bench-"))
    sink_user = ["-u", "nobody"] if os.geteuid() == 0 else []  # as root smtp-sink exits at once without -u
    results: dict[tuple[str, int], float] = {}
    servers = []
    p = free_port()
    servers.append(Server("smtp-sink", ["smtp-sink", *sink_user, "-c", f"127.0.0.1:{p}", "1000"], p))
    p = free_port()
    servers.append(Server("aiosmtpd-bare", [py, __file__, "--serve", "bare", "--port", str(p)], p))
    p = free_port()
    d = tmp / "fake1"
    servers.append(Server("fake-mta", [py, "-m", "maildrill", "mta", "--port", str(p), "--events", str(d)], p, d))
    if args.processes > 1:
        p = free_port()
        d = tmp / "fakeN"
        name = f"fake-mta x{args.processes}"
        servers.append(Server(name, [py, "-m", "maildrill", "mta", "--port", str(p), "--events", str(d),
                                     "--processes", str(args.processes)], p, d))
    print(f"smtp-source, {args.messages} messages of 1 KiB per run, CPUs: {os.cpu_count()}, load before: "
          f"{os.getloadavg()[0]:.2f}")
    for server in servers:
        with server:
            for s in args.sessions:
                rate = drive(server.port, s, args.messages)
                results[(server.name, s)] = rate
                print(f"  {server.name:<16} {s:>3} sessions: {rate:8.0f} msgs/s", flush=True)
        if server.events_dir is not None:
            got = count_accepted(server.events_dir)
            want = args.messages * len(args.sessions)
            status = "ok" if got == want else "MISMATCH"
            print(f"  {server.name:<16} recorded {got} mta.message.accepted events for {want} messages: {status}")
            if got != want:
                return 1
    print("\nratios")
    for s in args.sessions:
        sink, bare, fake = (results[(n, s)] for n in ("smtp-sink", "aiosmtpd-bare", "fake-mta"))
        line = (f"  {s:>3} sessions: fake/bare {fake / bare:.2f}x (target >= 0.85), fake/smtp-sink "
                f"{fake / sink:.2f}x")
        if args.processes > 1:
            multi = results[(f"fake-mta x{args.processes}", s)]
            line += f", fake x{args.processes}/smtp-sink {multi / sink:.2f}x, x{args.processes}/x1 {multi / fake:.2f}"
        print(line)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
