"""What the fault proxy costs with no toxic: SMTP throughput direct to a fake MTA vs through the embedded proxy,
through socat (a plain peer relay) and through a real Toxiproxy when `toxiproxy-server` is on PATH — same run,
driven alike by Postfix's `smtp-source` at 1 and 20 sessions.

    .venv/bin/python benchmarks/proxy_overhead.py [--messages 4000] [--sessions 1 20] [--rounds 3]

Needs `smtp-source` (apt-get install postfix) and `socat` (apt-get install socat) — `make system-deps`.
Prints msgs/s per path, each relay's ratio to direct, and the latency it adds per message
(1/rate_relay - 1/rate_direct). Targets: >= 0.85x direct at 20 sessions, <= 1 ms added per message at
1 session, ahead of socat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    args = ap.parse_args()
    for tool, pkg in (("smtp-source", "postfix"), ("socat", "socat")):
        if shutil.which(tool) is None:
            print(f"FATAL: `{tool}` not found: apt-get install {pkg} (or make system-deps)", file=sys.stderr)
            return 3
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-proxy-bench-"))
    mta_port = free_port()
    mta = Server("fake-mta", [py, "-m", "maildrill", "mta", "--port", str(mta_port)], mta_port)
    relays = []
    p = free_port()
    config = tmp / "proxies.json"
    config.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}", "upstream": f"127.0.0.1:{mta_port}"}]))
    relays.append(Server("embedded proxy", [py, "-m", "maildrill", "proxy", "--port", "0", "--config", str(config)],
                         p))
    p = free_port()
    relays.append(Server("socat", ["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=512",
                                   f"TCP:127.0.0.1:{mta_port}"], p))
    real = shutil.which("toxiproxy-server")
    if real:
        api, p = free_port(), free_port()
        cfg = tmp / "toxiproxy.json"
        cfg.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}", "upstream": f"127.0.0.1:{mta_port}"}]))
        # at its quietest (its default logs every connection at debug level), so it is measured at its best
        relays.append(Server("toxiproxy", ["env", "LOG_LEVEL=warn", real, "-host", "127.0.0.1", "-port", str(api),
                                           "-config", str(cfg)], p))
    print(f"smtp-source, {args.messages} messages of 1 KiB per run, CPUs: {os.cpu_count()}, load before: "
          f"{os.getloadavg()[0]:.2f}; upstream: the fake MTA (accept, recording nothing)"
          + ("" if real else "; no toxiproxy-server on PATH: real Toxiproxy not measured"))
    # Rounds interleave direct and relayed runs, and each relayed run is compared with the mean of the direct runs
    # just before and after it, so the machine's drift (2 cores, three processes) cancels; the median is reported.
    ratios: dict[tuple[str, int], list[float]] = {(r.name, s): [] for r in relays for s in args.sessions}
    rates: dict[tuple[str, int], list[float]] = {(n, s): [] for n in ["direct", *(r.name for r in relays)]
                                                 for s in args.sessions}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mta)
        for relay in relays:
            stack.enter_context(relay)
        for rnd in range(1, args.rounds + 1):
            for s in args.sessions:
                before = drive(mta_port, s, args.messages)
                got = {relay.name: drive(relay.port, s, args.messages) for relay in relays}
                after = drive(mta_port, s, args.messages)
                direct = (before + after) / 2
                rates[("direct", s)].append(direct)
                line = [f"direct {before:.0f}/{after:.0f}"]
                for name, rate in got.items():
                    rates[(name, s)].append(rate)
                    ratios[(name, s)].append(rate / direct)
                    line.append(f"{name} {rate:.0f} ({rate / direct:.2f}x)")
                print(f"  round {rnd}, {s:>3} sessions, msgs/s: " + ", ".join(line), flush=True)
    med = statistics.median
    print(f"\nagainst direct: median of {args.rounds} rounds (min..max)")
    for s in args.sessions:
        d = med(rates[("direct", s)])
        parts = [f"direct {d:.0f} msgs/s"]
        for relay in relays:
            rs, r = ratios[(relay.name, s)], med(rates[(relay.name, s)])
            parts.append(f"{relay.name} {med(rs):.2f}x ({min(rs):.2f}..{max(rs):.2f}, "
                         f"+{(1 / r - 1 / d) * 1000:.3f} ms/msg)")
        print(f"  {s:>3} sessions: " + ", ".join(parts))
    e20 = [s for s in args.sessions if s >= 20]
    e1 = [s for s in args.sessions if s == 1]
    if e20:
        s = e20[0]
        got = med(ratios[("embedded proxy", s)])
        print(f"target: embedded >= 0.85x direct at {s} sessions: {got:.2f}x ({'met' if got >= 0.85 else 'NOT met'})")
    if e1:
        added = (1 / med(rates[("embedded proxy", 1)]) - 1 / med(rates[("direct", 1)])) * 1000
        print(f"target: <= 1 ms added per message at 1 session: {added:.3f} ms ({'met' if added <= 1 else 'NOT met'})")
    for s in args.sessions:
        ahead = med(rates[("embedded proxy", s)]) / med(rates[("socat", s)])
        print(f"embedded / socat at {s} sessions: {ahead:.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
