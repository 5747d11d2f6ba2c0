"""A long rehearsal end to end: the bundled OTP launch drill reshaped to a steady 300 messages/s for 20 minutes
against the reference mailer (hardened profile), then `maildrill report` on its run directory.

    .venv/bin/python benchmarks/long_rehearsal.py [--minutes 20] [--rps 300] [--workers 0]

The relay's throttle and its Gmail persona (which throttles per IP by itself) are taken out: under 300 msg/s
they would only measure the queue. The rest of the drill is as bundled. Every second it samples the resident
memory and CPU time of each part: the harness (`maildrill run`, which also serves the fake MTA fleet and
records every event), the mailer, and Locust (one process, or master + workers). It prints their peaks and
the cores each part used, the event bytes per message, the achieved load shape (per-second error against
the shape, lateness of request starts), how many messages were delivered, and the analysis time and peak
memory of `maildrill report`. The part whose cores come closest to the machine's hits the ceiling first.
`--target fleet` sends SMTP from Locust straight into the fake MTA instead (no SUT): maildrill's own ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
from maildrill.harness.bundled import scenarios_dir
from maildrill.harness.load.shapes import expected_count
from maildrill.harness.scenario.models import ConstantShape
from maildrill.harness.store import EventStore


def scenario(minutes: float, rps: int, drain_s: float, mailer_workers: int | None, target: str,
             mta_port: int) -> dict[str, object]:
    doc = yaml.safe_load((scenarios_dir() / "otp-launch-spike.yaml").read_text())
    if target == "fleet":  # no SUT: each request is an SMTP transaction straight into the fake MTA
        del doc["sut"]
        doc["mtas"][0]["port"] = mta_port
        cls = doc["load"]["classes"][0]
        del cls["request"]
        cls["smtp"] = {"host": "127.0.0.1", "port": mta_port}
        doc["thresholds"] = {}
    elif mailer_workers:
        doc["sut"]["command"] = [*doc["sut"]["command"], "--workers", str(mailer_workers)]
    doc["name"] = "long-rehearsal"
    doc["description"] = f"the OTP launch drill as a steady {rps}/s for {minutes:g} min (benchmarks/long_rehearsal.py)"
    doc["duration_s"] = minutes * 60
    doc["drain_timeout_s"] = drain_s
    doc["mtas"][0]["behaviors"] = []
    doc["mtas"][0].pop("preset", None)  # Gmail's persona throttles per IP by itself
    doc["load"]["shape"] = {"kind": "constant", "rps": rps}
    if target != "fleet":
        doc["thresholds"] = {"http_error_ratio": {"max": 0}, "duplicates": {"max": 0}}
    return doc


class Sampler:
    """Peak RSS and CPU seconds per part, by PID (the run's pids.jsonl names the children)."""

    def __init__(self, harness_pid: int) -> None:
        self.harness_pid = harness_pid
        self.peak: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.procs: dict[int, tuple[str, psutil.Process]] = {}

    def _part(self, name: str) -> str:
        return "locust" if name.startswith("locust") else name

    def add(self, pid: int, name: str) -> None:
        if pid not in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.procs[pid] = (self._part(name), psutil.Process(pid))

    def sample(self, run_dir: Path | None) -> None:
        self.add(self.harness_pid, "harness")
        if run_dir is not None and (run_dir / "pids.jsonl").exists():
            for line in (run_dir / "pids.jsonl").read_text().splitlines():
                rec = json.loads(line)
                self.add(rec["pid"], rec["name"])
        rss: dict[str, int] = {}
        for pid, (part, p) in list(self.procs.items()):
            try:
                with p.oneshot():
                    rss[part] = rss.get(part, 0) + p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[f"{part}:{pid}"] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        for part, v in rss.items():
            self.peak[part] = max(self.peak.get(part, 0), v)

    def cpu_by_part(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, v in self.cpu.items():
            part = key.split(":")[0]
            out[part] = out.get(part, 0.0) + v
        return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ended(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "manifest.json").read_text()).get("ended_at"))
    except (OSError, ValueError):
        return False  # being rewritten


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="load phase length (default 20)")
    ap.add_argument("--rps", type=int, default=300, help="messages requested per second (default 300)")
    ap.add_argument("--workers", type=int, default=0, help="Locust workers (default 0: one process)")
    ap.add_argument("--drain", type=float, default=120.0, help="drain timeout, seconds (default 120)")
    ap.add_argument("--mailer-workers", type=int, help="the mailer's delivery workers (default: the drill's, 4)")
    ap.add_argument("--target", choices=["mailer", "fleet"], default="mailer",
                    help="mailer: HTTP into the reference mailer, which relays to the fleet (default); fleet: SMTP "
                         "from Locust straight into the fake MTA (no SUT: maildrill's own ceiling)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (printed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-long-"))
    path = tmp / "long-rehearsal.yaml"
    doc = scenario(args.minutes, args.rps, args.drain, args.mailer_workers, args.target, _free_port())
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp / "runs"
    print(f"CPUs: {os.cpu_count()}, load before: {os.getloadavg()[0]:.2f}; {args.minutes:g} min at {args.rps}/s, "
          f"target {args.target}, Locust workers={args.workers or 'none (1 process)'}"
          + (f", mailer workers={args.mailer_workers or 4}" if args.target == "mailer" else ""), flush=True)
    cmd = [sys.executable, "-m", "maildrill", "run", str(path), "--out", str(out), "--quiet"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    run_dir: Path | None = None
    wall = None
    while proc.poll() is None:
        if run_dir is None and out.exists():
            run_dir = next((d for d in out.iterdir() if d.is_dir()), None)
        if wall is None:
            sampler.sample(run_dir)
            # the drill has ended (the manifest says when); what follows is its own report, measured below
            if run_dir is not None and _ended(run_dir):
                wall = time.monotonic() - began
        time.sleep(1.0)  # the sampling period
    stdout, stderr = proc.communicate()
    wall = wall or time.monotonic() - began
    if run_dir is None:
        raise SystemExit(f"FATAL: no run directory; stderr: {stderr[-2000:]}")
    print(f"drill: exit {proc.returncode} after {wall:.0f} s; {stdout.strip().splitlines()[0] if stdout else ''}")

    events_dir = run_dir / "events"
    event_bytes = sum(p.stat().st_size for p in events_dir.glob("*.jsonl"))
    store = EventStore(events_dir)
    n_events = 0
    started: list[float] = []
    lateness: list[float] = []
    accepted: set[str] = set()
    requested: set[str] = set()
    ok = 0
    t0 = None
    for e in store.stream([]):
        n_events += 1
        if e.kind == "run.phase.changed" and e["phase"] == "load":
            t0 = e["load_t0_s"]
        elif e.kind == "load.request.completed":
            requested.add(e.corr or "")
            started.append(e["started_t_s"])
            lateness.append((e["started_t_s"] - e["scheduled_t_s"]) * 1000)
            ok += bool(e["ok"])
        elif e.kind == "mta.message.accepted":
            accepted.add(e.corr or "")
    assert t0 is not None
    duration = args.minutes * 60
    shape = ConstantShape(rps=args.rps)
    errs = []
    counts = [0] * int(duration)
    for t in started:
        s = int(t - t0)
        if 0 <= s < len(counts):
            counts[s] += 1
    for s, got in enumerate(counts):
        asked = expected_count(shape, s, s + 1, duration)
        errs.append(abs(got - asked) / asked)
    lateness.sort()
    asked_total = expected_count(shape, 0, duration, duration)
    print(f"messages: {len(requested)} requested ({asked_total:.0f} asked), {ok} requests ok, "
          f"{len(accepted & requested)} delivered")
    print(f"events: {n_events} ({n_events / max(1, len(requested)):.1f} per message), {event_bytes / 1e6:.1f} MB, "
          f"{event_bytes / max(1, len(requested)):.0f} bytes per message")
    print(f"load shape: worst second {max(errs):.1%} off, median second {statistics.median(errs):.1%}, "
          f"total {(len(started) - asked_total) / asked_total:+.2%}; request start after due (ms): "
          f"p50 {lateness[len(lateness) // 2]:.1f}, p99 {lateness[int(len(lateness) * 0.99)]:.1f}, "
          f"max {lateness[-1]:.1f}")
    cpu = sampler.cpu_by_part()
    print("peak resident memory and cores used (CPU seconds / drill wall time):")
    for part in sorted(sampler.peak):
        print(f"  {part:8} {sampler.peak[part] / 2**20:7.0f} MB   {cpu.get(part, 0.0) / wall:5.2f} cores")

    rep = subprocess.Popen([sys.executable, "-m", "maildrill", "report", str(run_dir), "--no-history"],
                           cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    peak = 0
    p = psutil.Process(rep.pid)
    while rep.poll() is None:
        try:
            peak = max(peak, p.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)  # the sampling period
    rep.communicate()
    print(f"analysis: `maildrill report` {time.monotonic() - began:.1f} s, peak {peak / 2**20:.0f} MB, exit "
          f"{rep.returncode}")
    print(f"run directory: {run_dir}" if args.keep else "")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
