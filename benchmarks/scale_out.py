"""Scale-out on one machine, same run: HTTP requests/s Locust drives through `maildrill run` with one process vs
`--workers 2` (a master and two workers), and accepted msgs/s of a 1-process vs 2-process fake MTA fleet
(`maildrill mta --processes 2`, driven by Postfix's `smtp-source`).

    .venv/bin/python benchmarks/scale_out.py [--rps 16000] [--seconds 5] [--messages 4000]

The HTTP target is a minimal keep-alive responder (it sends no mail), so Locust is the bottleneck being
measured. Prints both figures and both ratios. Needs `smtp-source` for the fleet half (make system-deps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mta_throughput import Server, drive, free_port  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent


def serve_http() -> None:
    """202 to every request, keep-alive: as fast as one Python process answers."""

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                head, _, rest = self.buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) < length:
                    return
                self.buf = rest[length:]
                self.t.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Answer, "127.0.0.1", int(os.environ["MAILDRILL_SUT_PORT"]), backlog=1024)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


def http_rate(tmp: Path, rps: int, seconds: int, workers: int) -> tuple[float, int]:
    scenario = {
        "version": 1, "name": f"scale-out-w{workers}", "seed": 1, "duration_s": seconds, "drain_timeout_s": 1,
        "mtas": [{"name": "primary"}],
        "sut": {"command": [sys.executable, str(Path(__file__).resolve()), "--serve-http"],
                "ready": {"tcp": True, "timeout_s": 20}},
        "load": {"shape": {"kind": "constant", "rps": rps}, "users": 400, "timeout_s": 5,
                 "classes": [{"name": "otp", "request": {"method": "POST", "path": "/otp",
                                                         "json": {"email": "{recipient}"}}}]},
    }
    path = tmp / f"scale-w{workers}.yaml"
    path.write_text(json.dumps(scenario))
    out = tmp / f"runs-w{workers}"
    cmd = [sys.executable, "-m", "maildrill", "run", str(path), "--out", str(out), "--quiet"]
    if workers:
        cmd += ["--workers", str(workers)]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    run = next(d for d in out.iterdir() if d.is_dir())
    from maildrill.harness.store import EventStore

    done = [e for e in EventStore(run / "events").events() if e.kind == "load.request.completed"]
    ok = [e for e in done if e.get("ok")]
    if len(ok) < 2:
        raise SystemExit(f"FATAL: the {workers}-worker run completed {len(ok)} requests; see {run}")
    first = min(e.get("started_t_s") or e.t_s for e in ok)
    last = max(e.t_s for e in ok)
    return len(ok) / (last - first), len(ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps", type=int, default=16000,
                    help="offered load, above what two Locust workers send here (default 16000)")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=4000, help="messages per fleet run")
    ap.add_argument("--serve-http", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_http:
        serve_http()
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-scale-out-"))
    print(f"CPUs: {os.cpu_count()}, load before: {os.getloadavg()[0]:.2f}")
    try:
        one, n1 = http_rate(tmp, args.rps, args.seconds, 0)
        print(f"  Locust, 1 process:        {one:7.0f} requests/s ({n1} requests, {args.rps}/s offered)", flush=True)
        two, n2 = http_rate(tmp, args.rps, args.seconds, 2)
        print(f"  Locust, --workers 2:      {two:7.0f} requests/s ({n2} requests)", flush=True)
        fleet = {}
        if shutil.which("smtp-source"):
            for procs in (1, 2):
                port = free_port()
                cmd = [sys.executable, "-m", "maildrill", "mta", "--port", str(port)]
                if procs > 1:
                    cmd += ["--processes", str(procs), "--events", str(tmp / "fleet-events")]
                with Server(f"fleet x{procs}", cmd, port):
                    fleet[procs] = drive(port, 20, args.messages)
                print(f"  fake MTA fleet, {procs} process{'es' if procs > 1 else ''}: {fleet[procs]:7.0f} msgs/s "
                      f"(20 sessions)", flush=True)
        else:
            print("  fake MTA fleet: smtp-source not found (apt-get install postfix): not measured")
        print("\nratios")
        print(f"  Locust --workers 2 / 1 process: {two / one:.2f}x")
        if fleet:
            print(f"  fleet 2 processes / 1 process:  {fleet[2] / fleet[1]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
