"""How analysis and reports scale: a synthetic run of 100 k and of 1 M events (JSONL, one file per writer, as a
real drill writes them), then `write_reports(run_dir)` — read, analyse, verdict, summary.json, report.html/.md,
junit.xml, every figure — timed in a fresh process so its peak memory is its own.

    .venv/bin/python benchmarks/analysis_scale.py [--sizes 100000 1000000]

Target: 1 M events in <= 15 s and <= 1 GB peak RSS on a 2-core machine, growing linearly (the 1 M / 100 k ratio
is printed; 10 means linear).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENTS_PER_MESSAGE = 9.3  # a little under what random_model produces per message, so a size is reached


def build(run_dir: Path, events_wanted: int) -> int:
    from maildrill.harness.analysis.synthetic import events, random_model
    from maildrill.harness.store import EventWriter

    model = random_model(max(1, int(events_wanted / EVENTS_PER_MESSAGE)), seed=1, duration_s=3600.0)
    (run_dir / "events").mkdir(parents=True)
    scenario = {**model.scenario(), "name": "scale", "seed": 1,
                "thresholds": {"duplicates": {"max": 0}, "latency_p99_s[otp]": {"max": 60}}}
    (run_dir / "scenario.json").write_text(json.dumps(scenario))
    (run_dir / "manifest.json").write_text(json.dumps({
        "schema": "maildrill.manifest", "version": 1, "run_id": run_dir.name, "scenario": "scale", "seed": 1,
        "time_scale": 1.0, "started_at": "2026-11-24T00:00:00+00:00", "status": "completed",
        "reproduce": "benchmarks/analysis_scale.py"}))
    writers: dict[str, EventWriter] = {}
    n = 0
    for e in events(model):
        w = writers.get(e.source)
        if w is None:
            w = writers[e.source] = EventWriter(run_dir / "events" / f"{e.source.replace('/', '-')}.jsonl", e.source)
        w.write(e)
        n += 1
    for w in writers.values():
        w.close()
    return n


def measure(run_dir: Path) -> None:
    from maildrill.harness.report import write_reports

    t = time.perf_counter()
    verdict = write_reports(run_dir, history=False)
    took = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": took, "peak_rss_mb": rss_mb, "verdict": verdict.summary_lines()[0]}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="maildrill-analysis-scale-"))
    results = {}
    try:
        for size in args.sizes:
            run = tmp / f"run-{size}"
            t = time.perf_counter()
            n = build(run, size)
            mb = sum(p.stat().st_size for p in (run / "events").glob("*.jsonl")) / 1e6
            print(f"{n:>9} events ({mb:.0f} MB of JSONL) generated in {time.perf_counter() - t:.1f} s", flush=True)
            out = subprocess.run([sys.executable, __file__, "--measure", str(run)], capture_output=True, text=True,
                                 timeout=600, check=False)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 3
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[size] = (n, r)
            print(f"{n:>9} events: reports written in {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"({r['verdict']})", flush=True)
        if len(results) >= 2:
            (n0, r0), (n1, r1) = (results[k] for k in (min(results), max(results)))
            print(f"\n{n1 / n0:.0f}x the events took {r1['seconds'] / r0['seconds']:.1f}x the time "
                  f"({'linear' if r1['seconds'] / r0['seconds'] <= 1.3 * n1 / n0 else 'worse than linear'})")
        biggest = results[max(results)]
        ok = biggest[1]["seconds"] <= 15 and biggest[1]["peak_rss_mb"] <= 1024
        print(f"target (1 M events <= 15 s, <= 1 GB): {biggest[1]['seconds']:.1f} s, "
              f"{biggest[1]['peak_rss_mb']:.0f} MB -> {'met' if ok else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
