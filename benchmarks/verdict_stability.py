"""Verdict stability: every bundled drill run N times with a CPU hog beside it; per thresholded metric the
min/median/max over the runs, and how many runs gave the drill's intended verdict.

    .venv/bin/python benchmarks/verdict_stability.py                       # every bundled drill
    .venv/bin/python benchmarks/verdict_stability.py --drill throttle-421-storm --drill ci-retry-regression
    .venv/bin/python benchmarks/verdict_stability.py --runs 3 --no-hog --json /tmp/stability.jsonl

Default runs: 10 for the demo drill (throttle-421-storm, once with its naive mailer and once with
`--profile hardened`) and the CI gate drill (ci-retry-regression), 5 for the others; `--runs N` sets
them all. The hog is `yes > /dev/null`, started before the first run and killed by its PID at the end,
so the drills see a machine with one core taken (the point: a verdict must not flip on machine load).
Every run keeps its seed (the scenario's), so what varies is only what the seed does not fix: the
scheduling of the SUT, Locust and the fake MTAs against real time. postfix-greylist needs Postfix
(make system-deps) and root; without it it is reported as not run.

A drill's variant passes the stability check when every run gave its intended verdict; the script
exits 1 if any did not (or a run did not complete).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from maildrill.harness.bundled import scenarios_dir

# headline metrics shown beside the thresholded ones (in parentheses: no threshold on them)
EXTRA = ("retry_amplification", "delivered", "undelivered")
HARDENED = "sut.command=[python, -m, maildrill.examples.mailer, --profile, hardened]"


@dataclass(frozen=True)
class Variant:
    label: str
    drill: str  # the bundled file's stem
    sets: tuple[str, ...]
    intended: str  # "PASS" or "FAIL"
    runs: int
    needs: str | None = None  # a program that must be on PATH


@dataclass
class Outcome:
    verdict: str  # PASS / FAIL / ERROR
    values: dict[str, float | None] = field(default_factory=dict)  # threshold name -> value
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    error: str = ""


def variants(runs: int | None) -> list[Variant]:
    """Every bundled drill with its intended verdict (from its header comment), demo and CI gate first."""
    first = [Variant("throttle-421-storm (naive)", "throttle-421-storm", (), "FAIL", runs or 10),
             Variant("throttle-421-storm (hardened)", "throttle-421-storm", (HARDENED,), "PASS", runs or 10),
             Variant("ci-retry-regression", "ci-retry-regression", (), "PASS", runs or 10)]
    rest = []
    for path in sorted(scenarios_dir().glob("*.yaml")):
        if path.stem in ("throttle-421-storm", "ci-retry-regression"):
            continue
        # a drill that replays a failure says so in its header comment ("it is expected to FAIL")
        intended = "FAIL" if "expected to FAIL" in path.read_text() else "PASS"
        needs = "postfix" if path.stem == "postfix-greylist" else None
        rest.append(Variant(path.stem, path.stem, (), intended, runs or 5, needs))
    return first + rest


def run_once(v: Variant, out: Path) -> Outcome:
    cmd = [sys.executable, "-m", "maildrill", "run", str(scenarios_dir() / f"{v.drill}.yaml"), "--out", str(out),
           "--quiet"]
    for s in v.sets:
        cmd += ["--set", s]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - started
    dirs = [d for d in out.iterdir() if (d / "summary.json").exists()] if out.exists() else []
    if proc.returncode not in (0, 1) or not dirs:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return Outcome("ERROR", wall_s=wall, error=f"exit {proc.returncode}: {' | '.join(tail)}")
    summary = json.loads(dirs[0].joinpath("summary.json").read_text())
    if summary["run"]["status"] != "completed":
        run = summary["run"]
        return Outcome("ERROR", wall_s=wall, error=f"status {run['status']}: {run['status_reason']}")
    checks = summary["verdict"]["checks"]
    extra = {f"({name})": summary["metrics"].get(name) for name in EXTRA}
    return Outcome("PASS" if summary["verdict"]["passed"] else "FAIL",
                   values={c["threshold"]: c["value"] for c in checks} | extra,
                   failed=[c["threshold"] for c in checks if not c["passed"]], wall_s=wall)


def limits(v: Variant) -> dict[str, str]:
    import yaml

    data = yaml.safe_load((scenarios_dir() / f"{v.drill}.yaml").read_text())
    return {k: " ".join(f"{op} {x}" for op, x in spec.items()) for k, spec in (data.get("thresholds") or {}).items()}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def table(v: Variant, outcomes: list[Outcome]) -> list[str]:
    done = [o for o in outcomes if o.verdict != "ERROR"]
    intended = sum(o.verdict == v.intended for o in outcomes)
    counts = {k: sum(o.verdict == k for o in outcomes) for k in ("PASS", "FAIL", "ERROR")}
    lines = [f"## {v.label}: {len(outcomes)} runs, intended {v.intended}: {intended}/{len(outcomes)} "
             f"(PASS {counts['PASS']}, FAIL {counts['FAIL']}, ERROR {counts['ERROR']}); "
             f"wall median {statistics.median(o.wall_s for o in outcomes):.0f} s"]
    lines.append(f"  {'metric':34} {'threshold':>12} {'min':>9} {'median':>9} {'max':>9} {'failed':>7}")
    for name, limit in [*limits(v).items(), *((f"({m})", "") for m in EXTRA)]:
        values = [o.values.get(name) for o in done]
        nums = [x for x in values if x is not None]
        failed = sum(name in o.failed for o in done)
        lo, med, hi = (min(nums), statistics.median(nums), max(nums)) if nums else (None, None, None)
        lines.append(f"  {name:34} {limit:>12} {fmt(lo):>9} {fmt(med):>9} {fmt(hi):>9} {failed:>4}/{len(done)}")
    for o in outcomes:
        if o.error:
            lines.append(f"  error: {o.error}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drill", action="append", help="a bundled drill (file stem); repeat for several (default all)")
    p.add_argument("--runs", type=int, help="runs per drill (default 10 for the demo and CI gate drills, 5 others)")
    p.add_argument("--no-hog", action="store_true", help="run without the CPU hog beside the drills")
    p.add_argument("--json", type=Path, help="also append one JSON line per run to this file")
    p.add_argument("--keep", type=Path, help="keep the run directories under this folder (default: deleted)")
    args = p.parse_args()
    chosen = [v for v in variants(args.runs) if not args.drill or v.drill in args.drill]
    unknown = set(args.drill or ()) - {v.drill for v in chosen}
    if unknown:
        p.error(f"no bundled drill {sorted(unknown)}; bundled: {sorted({v.drill for v in variants(None)})}")
    hog = None if args.no_hog else subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    print(f"verdict stability: {os.cpu_count()} CPUs, CPU hog {'pid ' + str(hog.pid) if hog else 'off'}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    base = args.keep or Path(tempfile.mkdtemp(prefix="maildrill-stability-"))
    report: list[str] = []
    stable = True
    try:
        for v in chosen:
            if v.needs and shutil.which(v.needs) is None and not Path(f"/usr/sbin/{v.needs}").exists():
                report += [f"## {v.label}: not run ({v.needs} is not installed; make system-deps)"]
                print(report[-1], flush=True)
                continue
            outcomes = []
            for i in range(v.runs):
                out = base / v.label.replace(" ", "_").replace("(", "").replace(")", "") / str(i)
                o = run_once(v, out)
                outcomes.append(o)
                print(f"{v.label} run {i + 1}/{v.runs}: {o.verdict} in {o.wall_s:.0f} s "
                      f"(load {os.getloadavg()[0]:.1f}) {json.dumps(o.values)} {o.error}", flush=True)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps({"variant": v.label, "run": i, "verdict": o.verdict, "values": o.values,
                                            "failed": o.failed, "wall_s": round(o.wall_s, 1), "error": o.error})
                                + "\n")
                if not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
            lines = table(v, outcomes)
            print("\n".join(lines), flush=True)
            report += lines
            stable &= all(o.verdict == v.intended for o in outcomes)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\n# verdict stability (every drill)\n" + "\n".join(report))
    print("\nevery run gave its intended verdict" if stable else "\nNOT STABLE: some run missed its intended verdict")
    return 0 if stable else 1


if __name__ == "__main__":
    sys.exit(main())
