"""`maildrill compare RUN_A RUN_B`: two runs' headline metrics side by side (did the fix work?)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare two runs' metrics side by side, e.g. the naive and the hardened retry policy"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run directory")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to compare with it")
    parser.add_argument("--format", choices=["text", "md", "json"], default="text", help="output format")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.report.compare import compare_runs
    from maildrill.harness.report.run import read_run

    read_run(args.run_a)  # a clear error for a path that is not a run directory
    read_run(args.run_b)
    print(compare_runs(args.run_a, args.run_b, fmt=args.format))
    return 0
