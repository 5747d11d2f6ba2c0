"""What the fault proxy costs with no toxic: SMTP throughput direct to a fake MTA vs through the embedded proxy,
through socat (a plain peer relay) and through a real Toxiproxy when `toxiproxy-server` is on PATH — same run,
driven alike by Postfix's `smtp-source` at 1 and 20 sessions.

    .venv/bin/python benchmarks/proxy_overhead.py [--messages 4000] [--sessions 1 20] [--rounds 3]

Two upstreams: maildrill's fake MTA, and Postfix's `smtp-sink` (faster, so a relay's own cost shows more).
Needs `smtp-source` and `smtp-sink` (apt-get install postfix) and `socat` (apt-get install socat) — `make
system-deps`. Prints msgs/s per path, each relay's ratio to direct, and the latency it adds per message
(1/rate_relay - 1/rate_direct), and each relay's own CPU time per message (from /proc: the figure that
holds when other work shares the machine). Targets: the embedded proxy at least as fast as a real
Toxiproxy on every row, and >= 0.8x direct against the fake MTA at 20 sessions.
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


def relays_for(tmp: Path, tag: str, upstream_port: int) -> list[Server]:
    """The embedded proxy (`maildrill proxy`, as users run it), socat and a real Toxiproxy if on PATH."""
    py = sys.executable
    out = []
    p = free_port()
    config = tmp / f"proxies-{tag}.json"
    config.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}",
                                   "upstream": f"127.0.0.1:{upstream_port}"}]))
    out.append(Server("embedded proxy", [py, "-m", "maildrill", "proxy", "--port", "0", "--config", str(config)], p))
    p = free_port()
    out.append(Server("socat", ["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=512",
                                f"TCP:127.0.0.1:{upstream_port}"], p))
    real = shutil.which("toxiproxy-server")
    if real:
        api, p = free_port(), free_port()
        cfg = tmp / f"toxiproxy-{tag}.json"
        cfg.write_text(json.dumps([{"name": "mta", "listen": f"127.0.0.1:{p}",
                                    "upstream": f"127.0.0.1:{upstream_port}"}]))
        # at its quietest (its default logs every connection at debug level), so it is measured at its best
        out.append(Server("toxiproxy", ["env", "LOG_LEVEL=warn", real, "-host", "127.0.0.1", "-port", str(api),
                                        "-config", str(cfg)], p))
    return out


def cpu_s(server: Server) -> float:
    """CPU seconds the relay's process has used (user + system, its reaped children included: socat forks)."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(upstream: Server, relays: list[Server], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """Interleaved rounds; each relayed run against the mean of the direct runs just before and after it (so the
    machine's drift cancels), the relays' order rotated every round; medians of the ratios and rates, and each
    relay's own CPU time per message (what it costs whatever else the machine is doing).
    -> {path: {sessions: median msgs/s}}, with ratios under "<path> ratio", CPU under "<path> cpu"."""
    cpu: dict[tuple[str, int], list[float]] = {(r.name, s): [] for r in relays for s in args.sessions}
    ratios: dict[tuple[str, int], list[float]] = {(r.name, s): [] for r in relays for s in args.sessions}
    rates: dict[tuple[str, int], list[float]] = {(n, s): [] for n in ["direct", *(r.name for r in relays)]
                                                 for s in args.sessions}
    with contextlib.ExitStack() as stack:
        stack.enter_context(upstream)
        for relay in relays:
            stack.enter_context(relay)
        for rnd in range(1, args.rounds + 1):
            for s in args.sessions:
                before = drive(upstream.port, s, args.messages)
                got = {}
                k = (rnd - 1) % len(relays)
                for relay in relays[k:] + relays[:k]:
                    c0 = cpu_s(relay)
                    got[relay.name] = drive(relay.port, s, args.messages)
                    cpu[(relay.name, s)].append((cpu_s(relay) - c0) / args.messages * 1000)
                after = drive(upstream.port, s, args.messages)
                direct = (before + after) / 2
                rates[("direct", s)].append(direct)
                line = [f"direct {before:.0f}/{after:.0f}"]
                for name, rate in got.items():
                    rates[(name, s)].append(rate)
                    ratios[(name, s)].append(rate / direct)
                    line.append(f"{name} {rate:.0f} ({rate / direct:.2f}x, {cpu[(name, s)][-1]:.3f} CPU ms/msg)")
                print(f"  round {rnd}, {s:>3} sessions, msgs/s: " + ", ".join(line), flush=True)
    med = statistics.median
    print(f"  against direct, median of {args.rounds} rounds (min..max):")
    out: dict[str, dict[int, float]] = {}
    for s in args.sessions:
        d = med(rates[("direct", s)])
        out.setdefault("direct", {})[s] = d
        parts = [f"direct {d:.0f} msgs/s"]
        for relay in relays:
            rs, r = ratios[(relay.name, s)], med(rates[(relay.name, s)])
            out.setdefault(relay.name, {})[s] = r
            out.setdefault(relay.name + " ratio", {})[s] = med(rs)
            out.setdefault(relay.name + " cpu", {})[s] = med(cpu[(relay.name, s)])
            parts.append(f"{relay.name} {med(rs):.2f}x ({min(rs):.2f}..{max(rs):.2f}, "
                         f"+{(1 / r - 1 / d) * 1000:.3f} ms/msg, {med(cpu[(relay.name, s)]):.3f} CPU ms/msg)")
        print(f"  {s:>3} sessions: " + ", ".join(parts))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=4000, help="messages per run (default 4000)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    ap.add_argument("--upstreams", nargs="+", choices=["fake-mta", "smtp-sink"], default=["fake-mta", "smtp-sink"])
    args = ap.parse_args()
    for tool, pkg in (("smtp-source", "postfix"), ("smtp-sink", "postfix"), ("socat", "socat")):
        if shutil.which(tool) is None:
            print(f"FATAL: `{tool}` not found: apt-get install {pkg} (or make system-deps)", file=sys.stderr)
            return 3
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-proxy-bench-"))
    real = shutil.which("toxiproxy-server")
    print(f"smtp-source, {args.messages} messages of 1 KiB per run, CPUs: {os.cpu_count()}, load before: "
          f"{os.getloadavg()[0]:.2f}" + ("" if real else "; no toxiproxy-server on PATH: real Toxiproxy not measured"))
    results = {}
    for up in args.upstreams:
        port = free_port()
        if up == "fake-mta":
            upstream = Server("fake-mta", [sys.executable, "-m", "maildrill", "mta", "--port", str(port)], port)
            print("\nupstream: the fake MTA (accept, recording nothing)")
        else:
            as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root without -u
            upstream = Server("smtp-sink", ["smtp-sink", *as_root, f"127.0.0.1:{port}", "1024"], port)
            print("\nupstream: Postfix's smtp-sink (a faster upstream: the relay's own cost shows more)")
        results[up] = measure(upstream, relays_for(tmp, up, port), args)
    print("\ntargets (ratios measured in the same run):")
    for up, res in results.items():
        for s in args.sessions:
            e = res["embedded proxy ratio"][s]
            if "toxiproxy ratio" in res:
                t = res["toxiproxy ratio"][s]
                ec, tc = res["embedded proxy cpu"][s], res["toxiproxy cpu"][s]
                print(f"  {up}, {s:>3} sessions: embedded {e:.2f}x direct vs toxiproxy {t:.2f}x: "
                      f"{'met' if e >= t else 'NOT met'} (embedded >= toxiproxy); CPU per message embedded "
                      f"{ec:.3f} ms vs toxiproxy {tc:.3f} ms: {'met' if ec <= tc else 'NOT met'}")
            if up == "fake-mta" and s >= 20:
                print(f"  {up}, {s:>3} sessions: embedded {e:.2f}x direct: {'met' if e >= 0.8 else 'NOT met'} "
                      "(>= 0.8x)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
