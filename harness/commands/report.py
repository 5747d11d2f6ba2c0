"""`maildrill report RUN_DIR`: rebuild every report of a run from its run directory alone."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rebuild a run's reports (summary.json, report.html/.md, junit.xml, figures) from its run directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory, e.g. reports/<run-id>")
    parser.add_argument("--no-history", action="store_true", help="do not rebuild the parent's index.html")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.report import write_reports

    verdict = write_reports(args.run_dir, history=not args.no_history)
    for line in verdict.summary_lines():
        print(line)
    print(f"report: {args.run_dir / 'report.html'}")
    return verdict.exit_code
