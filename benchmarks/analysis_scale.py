"""How analysis and reports scale: a run of N events (JSONL, one file per writer, as a real drill writes them),
then `write_reports(run_dir)` — read, analyse, verdict, summary.json, report.html/.md, junit.xml, every figure —
timed in a fresh process so its peak memory is its own. A big run's pass is read by two processes (the report's
own and the second one it starts, `harness/analysis/split.py`): the peak printed and checked is both processes'
resident memory together, sampled 5 times a second, beside each one's own peak.

    .venv/bin/python benchmarks/analysis_scale.py [--sizes 1000000 10000000]
    .venv/bin/python benchmarks/analysis_scale.py --real-drill otp-launch-spike --sizes 1000000 10000000
    .venv/bin/python benchmarks/analysis_scale.py --real RUN_DIR --sizes 1000000 10000000

Two kinds of input:
- synthetic (default): `random_model` of `harness/analysis/synthetic.py`, whose model knows the true answers; the
  report's counts are checked against `expected(model)` ("counts exact").
- a real run replicated (`--real RUN_DIR`, or `--real-drill NAME` to run that bundled drill first): every copy of
  the run's messages gets new correlation ids (and message ids, recipients, connection and webhook numbers) and is
  shifted by the drill's duration, so N events are an N/size-of-run times longer drill of the same shape; the
  report's additive counts (requests, messages, deliveries, attempts, duplicates) are checked to be exactly copies
  times the original's.

The event files are read once before each timed report, so that the figure is the analysis's, not the disk's:
this machine's page cache is reclaimed while idle, and a cold read of 2.6 GB took 8 s and made a 43 s report
77 s.

Targets (2-core machine): 1 M events <= 15 s, 10 M events <= 60 s, each <= 1 GB peak RSS, and 10x the events in
<= 10x the time (the ratio between the smallest and the largest size is printed). The machine's load average is
printed beside every figure: on a shared machine, compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

EVENTS_PER_MESSAGE = 9.3  # a little under what random_model produces per message, so a size is reached
CHUNK = 20_000  # messages turned into events at a time (10 M events as one list of Events would need ~5 GB)
ADDITIVE = ("requests_total", "messages_requested", "delivered", "undelivered", "attempts_total", "duplicates",
            "acknowledged_but_lost")


def load() -> str:
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- synthetic ---------------------------------------------------------------------------------------
def build_synthetic(run_dir: Path, events_wanted: int) -> tuple[int, dict[str, Any]]:
    from maildrill.harness.analysis.synthetic import events, expected, random_model
    from maildrill.harness.store import EventWriter

    model = random_model(max(1, int(events_wanted / EVENTS_PER_MESSAGE)), seed=1, duration_s=3600.0)
    (run_dir / "events").mkdir(parents=True)
    scenario = {**model.scenario(), "name": "scale", "seed": 1,
                "thresholds": {"duplicates": {"max": 0}, "latency_p99_s[otp]": {"max": 60}}}
    (run_dir / "scenario.json").write_text(json.dumps(scenario))
    _manifest(run_dir, "scale")
    writers: dict[str, EventWriter] = {}
    conn_base: dict[str, int] = {}  # each chunk numbers its connections from 1: shift them past the last chunk's
    n = 0
    for start in range(0, len(model.messages), CHUNK):
        chunk = dataclasses.replace(model, messages=model.messages[start:start + CHUNK])
        top: dict[str, int] = {}
        for e in events(chunk):
            if e.source == "run" and start:
                continue  # the run's own events (start, phases) once
            if "conn" in e.data:
                c = int(e.data["conn"])  # type: ignore[arg-type]
                top[e.source] = max(top.get(e.source, 0), c)
                e = dataclasses.replace(e, data={**e.data, "conn": c + conn_base.get(e.source, 0)})
            w = writers.get(e.source)
            if w is None:
                w = writers[e.source] = EventWriter(run_dir / "events" / f"{e.source.replace('/', '-')}.jsonl",
                                                    e.source)
            w.write(e)
            n += 1
        for src, c in top.items():
            conn_base[src] = conn_base.get(src, 0) + c
    for w in writers.values():
        w.close()
    truth = expected(model)
    return n, {k: truth[k] for k in ADDITIVE if k in truth}


def _manifest(run_dir: Path, scenario: str) -> None:
    (run_dir / "manifest.json").write_text(json.dumps({
        "schema": "maildrill.manifest", "version": 1, "run_id": run_dir.name, "scenario": scenario, "seed": 1,
        "time_scale": 1.0, "started_at": "2026-11-24T00:00:00+00:00", "status": "completed",
        "reproduce": "benchmarks/analysis_scale.py"}))


# --- a real run, replicated --------------------------------------------------------------------------
RENUMBERED = ("conn", "webhook")  # per-source integers that must not collide between copies
SUFFIXED = ("message_id", "rcpt")  # strings that name the message (webhook lag is keyed by them)


def run_drill(name: str, out: Path) -> Path:
    print(f"running the bundled drill {name} for a real run directory ...", flush=True)
    subprocess.run([sys.executable, "-m", "maildrill", "run", name, "--out", str(out), "--quiet"],
                   timeout=900, check=False, capture_output=True)
    runs = sorted(p for p in out.iterdir() if (p / "events").is_dir())
    if not runs:
        raise SystemExit(f"the drill {name} wrote no run directory under {out}")
    return runs[-1]


def build_replicated(source_run: Path, run_dir: Path, events_wanted: int) -> tuple[int, dict[str, Any]]:
    """Copies of `source_run`'s events until `events_wanted`; the expected additive counts: copies x original."""
    files = sorted((source_run / "events").glob("*.jsonl"))
    lines = {p.name: [orjson.loads(raw) for raw in p.read_bytes().splitlines() if raw.strip()] for p in files}
    per_copy = sum(1 for recs in lines.values() for r in recs if "kind" in r)
    run_per_copy = sum(1 for recs in lines.values() for r in recs if "kind" in r and r["source"] == "run")
    copies = max(1, round((events_wanted - run_per_copy) / max(1, per_copy - run_per_copy)))
    scenario = json.loads((source_run / "scenario.json").read_text())
    # each copy starts after the previous one's last event (its drain included), so copies never overlap
    span = max(r["t_s"] for recs in lines.values() for r in recs if "kind" in r) + 1.0
    top: dict[tuple[str, str], int] = {}
    actions = 0
    for recs in lines.values():
        for r in recs:
            for f in RENUMBERED:
                if isinstance(r.get(f), int):
                    top[(r["source"], f)] = max(top.get((r["source"], f), 0), r[f])
            if r.get("kind") == "run.action.fired":
                actions = max(actions, int(r.get("action", 0)) + 1)
    (run_dir / "events").mkdir(parents=True)
    scenario = {**scenario, "duration_s": float(scenario.get("duration_s") or 60.0) + (copies - 1) * span
                / float(scenario.get("time_scale") or 1.0)}
    (run_dir / "scenario.json").write_text(json.dumps(scenario))
    _manifest(run_dir, str(scenario.get("name", "replicated")))
    n = 0
    for name, recs in lines.items():
        with open(run_dir / "events" / name, "wb") as out:
            for k in range(copies):
                buf = []
                for r in recs:
                    if "kind" not in r:  # the header
                        if k == 0:
                            buf.append(orjson.dumps(r))
                        continue
                    at_end = r["kind"] in ("run.drain.ended", "run.ended") or r.get("phase") in ("drain", "stopped")
                    if (r["source"] == "run" and r["kind"] not in ("run.action.fired", "run.action.undone")
                            and k != (copies - 1 if at_end else 0)):
                        continue  # the run's start, load second 0 and its end: once
                    c = dict(r)
                    c["t_s"] = r["t_s"] + k * span
                    if k:
                        if c.get("corr") is not None:
                            c["corr"] = f"{c['corr']}~{k}"
                        for f in SUFFIXED:
                            if isinstance(c.get(f), str):
                                c[f] = f"{c[f]}~{k}"
                        for f in RENUMBERED:
                            if isinstance(c.get(f), int):
                                c[f] = c[f] + k * (top[(r["source"], f)] + 1)
                        if isinstance(c.get("action"), int) and r["source"] == "run":
                            c["action"] = c["action"] + k * actions
                    buf.append(orjson.dumps(c))
                    n += 1
                out.write(b"\n".join(buf) + b"\n")
    original = json.loads((source_run / "summary.json").read_text())["metrics"]
    return n, {key: original[key] * copies for key in ADDITIVE if isinstance(original.get(key), int)}


# --- the measurement ---------------------------------------------------------------------------------
def _tree_rss_mb() -> float:
    """This process's resident memory plus its children's (the analysis' second process), from /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    pids = [os.getpid()]
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(x) for x in (task / "children").read_text().split()]
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return total / 2**20


def measure(run_dir: Path) -> None:
    from maildrill.harness.report import write_reports

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:  # the two processes' memory together, 5 times a second (a peak lasts seconds)
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    verdict = write_reports(run_dir, history=False)
    took = time.perf_counter() - t
    done.set()
    sampler.join()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": took, "peak_rss_mb": rss_mb, "second_process_peak_mb": child_mb,
                      "both_peak_mb": max(peak[0], rss_mb), "verdict": verdict.summary_lines()[0],
                      "load": os.getloadavg()}))


def target_s(events: int) -> float | None:
    return 60.0 if events >= 9_000_000 else 15.0 if events >= 900_000 else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--real", type=Path, metavar="RUN_DIR",
                     help="replicate this run directory (with its summary.json)")
    src.add_argument("--real-drill", metavar="NAME", help="run this bundled drill first, then replicate its run")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="build the runs here and keep them (reused when present)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="maildrill-analysis-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    source_run = args.real or (run_drill(args.real_drill, tmp / "drill") if args.real_drill else None)
    if source_run is not None and not (source_run / "summary.json").exists():
        raise SystemExit(f"{source_run}: no summary.json (run `maildrill report {source_run}` first)")
    kind = f"replicated {source_run.name}" if source_run is not None else "synthetic"
    results: dict[int, tuple[int, dict[str, Any]]] = {}
    missed = False
    try:
        for size in args.sizes:
            run = tmp / (f"run-{size}" if source_run is None else f"replicated-{size}")
            t = time.perf_counter()
            truth_file = run / "expected.json"
            if not truth_file.exists():
                shutil.rmtree(run, ignore_errors=True)
                n, truth = (build_synthetic(run, size) if source_run is None
                            else build_replicated(source_run, run, size))
                truth_file.write_text(json.dumps({"events": n, "counts": truth}))
            got = json.loads(truth_file.read_text())
            n, truth = got["events"], got["counts"]
            mb = sum(p.stat().st_size for p in (run / "events").glob("*.jsonl")) / 1e6
            print(f"{n:>9} events ({kind}, {mb:.0f} MB of JSONL) ready in {time.perf_counter() - t:.1f} s",
                  flush=True)
            warm = time.perf_counter()
            for f in (run / "events").glob("*.jsonl"):  # into the page cache first: the analysis's time, not the disk's
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass
            print(f"          (files read once into the page cache in {time.perf_counter() - warm:.1f} s)", flush=True)
            out = subprocess.run([sys.executable, __file__, "--measure", str(run)], capture_output=True, text=True,
                                 timeout=1800, check=False)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 3
            r = json.loads(out.stdout.strip().splitlines()[-1])
            summary = json.loads((run / "summary.json").read_text())["metrics"]
            wrong = {k: (summary.get(k), v) for k, v in truth.items() if summary.get(k) != v}
            results[size] = (n, r)
            limit = target_s(n)
            ok = (limit is None or r["seconds"] <= limit) and r["both_peak_mb"] <= 1024 and not wrong
            missed |= not ok
            print(f"{n:>9} events: reports written in {r['seconds']:.2f} s, peak RSS {r['both_peak_mb']:.0f} MB "
                  f"of both processes together (this one {r['peak_rss_mb']:.0f} MB, the second "
                  f"{r['second_process_peak_mb']:.0f} MB at its own peak) "
                  f"(load avg {' '.join(f'{x:.2f}' for x in r['load'])}); counts "
                  f"{'exact' if not wrong else f'WRONG (got, expected): {wrong}'}; "
                  f"target (<= {limit or '-'} s, <= 1024 MB): {'met' if ok else 'MISSED'}  [{r['verdict']}]",
                  flush=True)
        if len(results) >= 2:
            (n0, r0), (n1, r1) = (results[k] for k in (min(results), max(results)))
            ev, tm = n1 / n0, r1["seconds"] / r0["seconds"]
            ok = tm <= ev
            missed |= not ok
            print(f"\n{ev:.1f}x the events took {tm:.2f}x the time; target (<= {ev:.1f}x): "
                  f"{'met' if ok else 'MISSED'}  ({load()})")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
