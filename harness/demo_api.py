"""The API demo: a vendor that loses one response in five, and what boto3's default retries make of it.

Runs scenarios/api-lost-responses.yaml twice at once — the reference mailer on Amazon SES through boto3,
with its naive profile (the SDK's own retries left on: a lost response is re-sent, the user gets the code
twice) and with its hardened one (SDK retries off, a request whose outcome is unknown not re-sent) — then
prints the two runs' headline metrics side by side and where the HTML reports are. Exits 0 when both drills
ran (whatever their verdicts), 3 when one could not run. About a minute.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from maildrill.harness.bundled import scenarios_dir

SCENARIO = scenarios_dir() / "api-lost-responses.yaml"
SUTS = {
    label: f"[python, -m, maildrill.examples.mailer, --profile, {label}, --transport, ses, --primary, ses]"
    for label in ("naive", "hardened")
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maildrill.harness.demo_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the run directories go")
    args = parser.parse_args(argv)
    print("maildrill API demo: Amazon SES (a fake, spoken to by the real boto3) loses 20 % of its responses\n"
          "for 10 s. The same drill runs against the reference mailer twice, side by side: naive, hardened.\n",
          flush=True)
    started = time.monotonic()
    procs = {}
    for label, sut in SUTS.items():
        cmd = [sys.executable, "-m", "maildrill", "run", str(SCENARIO), "--out", str(args.out), "--quiet",
               "--set", f"sut.command={sut}", "--set", f"description=api-lost-responses, {label} mailer"]
        print(f"  $ maildrill run {SCENARIO.stem} --set 'sut.command={sut}'", flush=True)
        procs[label] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs: dict[str, Path] = {}
    for label, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        lines = stdout.splitlines()
        print(f"\n[{label}]")
        for line in lines:
            if not line.startswith(("run directory:", "reproduce:", "status: completed")):
                print(f"    {line}")
        run_dir = next((Path(line.split(": ", 1)[1]) for line in lines if line.startswith("run directory: ")), None)
        if run_dir is None or proc.returncode not in (0, 1):
            sys.stderr.write(stderr)
            print(f"the {label} drill did not run to a verdict (exit {proc.returncode})", file=sys.stderr)
            return 3
        runs[label] = run_dir
    print(f"\n(both drills: {time.monotonic() - started:.0f} s)\n")
    from maildrill.harness.report.compare import compare_runs

    print(compare_runs(runs["naive"], runs["hardened"], labels=("naive", "hardened")))
    print()
    for label, run_dir in runs.items():
        report = run_dir / "report.html"
        print(f"{label:>9}: {report if report.exists() else run_dir}")
    print("\nWhat to look for: duplicates. boto3's default retry mode re-sends a request whose response was lost,\n"
          "and SES has no idempotency key, so the naive mailer's users get those codes twice\n"
          "(duplicates_after_lost_ack); the hardened mailer turns the SDK's retries off, does not re-send an\n"
          "unknown outcome, and sends every code once.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
