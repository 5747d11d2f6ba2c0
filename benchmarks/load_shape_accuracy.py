"""Load-shape accuracy: a real drill (Locust subprocess, test SUT, fake MTA, timeline) with a spike to 200 req/s.

Prints, per second of the load phase, the requests the shape asked for and the requests Locust started
(from `load.request.completed` events, by `started_t_s`), the worst per-second error at the peak and
over the whole run, and the timeline lags (`run.action.fired` lag_ms). A low-rate spike (20 req/s peak)
measured in the same run is the baseline the 200 req/s figures are compared against.

    .venv/bin/python benchmarks/load_shape_accuracy.py [--peak 200] [--workers 0]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maildrill.harness.load.shapes import expected_count  # noqa: E402
from maildrill.harness.run.drill import RunOptions, run_drill  # noqa: E402
from maildrill.harness.scenario import parse_scenario_text  # noqa: E402
from maildrill.harness.store import EventStore  # noqa: E402

SCENARIO = """\
version: 1
name: shape-accuracy-{peak}
seed: 1
duration_s: 20
drain_timeout_s: 30
mtas:
  - name: primary
sut:
  command: ["python", "{sut}"]
  ready: {{http: /healthz, timeout_s: 30}}
  env: {{SUT_RETRY_S: "0.2", SUT_WORKERS: "8"}}
load:
  shape: {{kind: spike, base_rps: {base}, peak_rps: {peak}, start_s: 5, hold_s: 10}}
  classes:
    - name: otp
      request: {{method: POST, path: /otp, json: {{email: "{{recipient}}"}}}}
timeline:
  - {{at_s: 7, mta: primary, set: [{{kind: tempfail, code: 451}}]}}
  - {{at_s: 9, mta: primary, set: [{{kind: accept}}]}}
  - {{at_s: 11, mta: primary, set: [{{kind: go_dark, mode: refuse}}], for_s: 1}}
"""


def measure(peak: int, workers: int, out: Path) -> dict[str, float]:
    base = max(1, peak // 4)
    text = SCENARIO.format(peak=peak, base=base, sut=ROOT / "tests" / "e2e" / "sut_app.py")
    scenario = parse_scenario_text(text, source=f"spike {peak}")
    result = run_drill(scenario, RunOptions(out=out, quiet=True, workers=workers, cwd=ROOT, reports=False))
    if result.status.value != "completed":
        raise SystemExit(f"drill {peak}: {result.status.value}: {result.reason}")
    events = EventStore(result.run_dir / "events").events()
    t0 = next(e["load_t0_s"] for e in events if e.kind == "run.phase.changed" and e["phase"] == "load")
    started = [e["started_t_s"] - t0 for e in events if e.kind == "load.request.completed"]
    shape, duration = scenario.load.shape, scenario.duration_s
    print(f"\n== spike {base} → {peak} → {base} req/s, {duration:g} s, workers={workers or 'none (1 process)'}")
    print(f"{'second':>6} {'asked':>7} {'started':>8} {'error':>7}")
    errs, peak_errs = [], []
    for s in range(math.ceil(duration)):
        asked = expected_count(shape, s, s + 1, duration)
        got = sum(1 for t in started if s <= t < s + 1)
        err = (got - asked) / asked if asked else 0.0
        errs.append(abs(err))
        if 5 <= s < 15:
            peak_errs.append(abs(err))
        print(f"{s:>6} {asked:>7.0f} {got:>8} {err:>+7.1%}")
    lags = [e["lag_ms"] for e in events if e.kind in ("run.action.fired", "run.action.undone")]
    total_asked = expected_count(shape, 0, duration, duration)
    late = [t for t in started if t >= duration]
    lateness = sorted((e["started_t_s"] - e["scheduled_t_s"]) * 1000 for e in events
                      if e.kind == "load.request.completed")
    figures = {"peak_max_err": max(peak_errs), "max_err": max(errs),
               "total_err": (len(started) - total_asked) / total_asked, "lag_max_ms": max(lags),
               "lag_median_ms": statistics.median(lags), "late": len(late),
               "start_p50_ms": lateness[len(lateness) // 2], "start_p99_ms": lateness[int(len(lateness) * 0.99)],
               "start_max_ms": lateness[-1]}
    print(f"total asked {total_asked:.0f}, started {len(started)} ({figures['total_err']:+.2%}); "
          f"started after the load phase: {len(late)}")
    print(f"request start after its due time (ms): p50 {figures['start_p50_ms']:.1f}, "
          f"p99 {figures['start_p99_ms']:.1f}, max {figures['start_max_ms']:.1f}")
    print(f"worst second at the peak: {figures['peak_max_err']:.1%}; worst second overall: {figures['max_err']:.1%}")
    print(f"timeline lags (ms): {sorted(round(x, 1) for x in lags)}")
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak", type=int, default=200)
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="maildrill-bench-") as tmp:
        baseline = measure(20, args.workers, Path(tmp))
        target = measure(args.peak, args.workers, Path(tmp))
    print("\n== summary")
    print(f"baseline (20 req/s peak): worst second at peak {baseline['peak_max_err']:.1%}, "
          f"max timeline lag {baseline['lag_max_ms']:.1f} ms, start p99 {baseline['start_p99_ms']:.1f} ms")
    print(f"{args.peak} req/s peak:         worst second at peak {target['peak_max_err']:.1%}, "
          f"max timeline lag {target['lag_max_ms']:.1f} ms, start p99 {target['start_p99_ms']:.1f} ms "
          f"({target['start_p99_ms'] / max(baseline['start_p99_ms'], 0.001):.1f}x baseline)")
    ok_rate = target["peak_max_err"] <= 0.10
    ok_lag = target["lag_max_ms"] <= 50
    print(f"target: every second within 10 % at {args.peak} req/s: {'MET' if ok_rate else 'NOT MET'}; "
          f"timeline actions within 50 ms: {'MET' if ok_lag else 'NOT MET'}")
    return 0 if ok_rate and ok_lag else 1


if __name__ == "__main__":
    sys.exit(main())
