"""What the fault proxy costs with no toxic: SMTP throughput direct to a fake MTA vs through the embedded proxy,
through socat (a plain peer relay) and through a real Toxiproxy when `toxiproxy-server` is on PATH — same run,
driven alike by Postfix's `smtp-source` at 1 and 20 sessions.

    .venv/bin/python benchmarks/proxy_overhead.py [--messages 4000] [--sessions 1 20]

Needs `smtp-source` (apt-get install postfix) and `socat` (apt-get install socat) — `make system-deps`.
Prints msgs/s per path, each relay's ratio to direct, and the latency it adds per message
(1/rate_relay - 1/rate_direct). Targets: >= 0.85x direct at 20 sessions, <= 1 ms added per message at
1 session, ahead of socat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mta_throughput import Server, drive, free_port  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=4000, help="messages per run (default 4000)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 20])
    args = ap.parse_args()
    for tool, pkg in (("smtp-source", "postfix"), ("socat", "socat")):
        if shutil.which(tool) is None:
            print(f"FATAL: `{tool}` not found: apt-get install {pkg} (or make system-deps)", file=sys.stderr)
            return 3
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-proxy-bench-"))
    mta_port = free_port()
    mta = Server("fake-mta", [py, "-m", "harness.cli", "mta", "--port", str(mta_port)], mta_port)
    relays = []
    p = free_port()
    config = tmp / "proxies.json"
    config.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}", "upstream": f"127.0.0.1:{mta_port}"}]))
    relays.append(Server("embedded proxy", [py, "-m", "harness.cli", "proxy", "--port", "0", "--config", str(config)],
                         p))
    p = free_port()
    relays.append(Server("socat", ["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=512",
                                   f"TCP:127.0.0.1:{mta_port}"], p))
    real = shutil.which("toxiproxy-server")
    if real:
        api, p = free_port(), free_port()
        cfg = tmp / "toxiproxy.json"
        cfg.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}", "upstream": f"127.0.0.1:{mta_port}"}]))
        relays.append(Server("toxiproxy", [real, "-host", "127.0.0.1", "-port", str(api), "-config", str(cfg)], p))
    print(f"smtp-source, {args.messages} messages of 1 KiB per run, CPUs: {os.cpu_count()}, load before: "
          f"{os.getloadavg()[0]:.2f}; upstream: the fake MTA (accept, recording nothing)"
          + ("" if real else "; no toxiproxy-server on PATH: real Toxiproxy not measured"))
    rates: dict[tuple[str, int], float] = {}
    with mta:
        for s in args.sessions:
            rates[("direct", s)] = drive(mta_port, s, args.messages)
            print(f"  {'direct':<15} {s:>3} sessions: {rates[('direct', s)]:8.0f} msgs/s", flush=True)
        for relay in relays:
            with relay:
                for s in args.sessions:
                    rates[(relay.name, s)] = drive(relay.port, s, args.messages)
                    print(f"  {relay.name:<15} {s:>3} sessions: {rates[(relay.name, s)]:8.0f} msgs/s", flush=True)
        for s in args.sessions:  # direct again: the machine's drift over the run shows here
            again = drive(mta_port, s, args.messages)
            print(f"  {'direct (again)':<15} {s:>3} sessions: {again:8.0f} msgs/s", flush=True)
            rates[("direct", s)] = (rates[("direct", s)] + again) / 2
    print("\nagainst direct (mean of the two direct runs)")
    for s in args.sessions:
        d = rates[("direct", s)]
        parts = []
        for relay in relays:
            r = rates[(relay.name, s)]
            parts.append(f"{relay.name} {r / d:.2f}x (+{(1 / r - 1 / d) * 1000:.3f} ms/msg)")
        print(f"  {s:>3} sessions: " + ", ".join(parts))
    e20 = [s for s in args.sessions if s >= 20]
    e1 = [s for s in args.sessions if s == 1]
    if e20:
        s = e20[0]
        print(f"target: embedded >= 0.85x direct at {s} sessions: "
              f"{rates[('embedded proxy', s)] / rates[('direct', s)]:.2f}x")
    if e1:
        added = (1 / rates[("embedded proxy", 1)] - 1 / rates[("direct", 1)]) * 1000
        print(f"target: <= 1 ms added per message at 1 session: {added:.3f} ms")
    for s in args.sessions:
        ahead = rates[("embedded proxy", s)] / rates[("socat", s)]
        print(f"embedded / socat at {s} sessions: {ahead:.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
