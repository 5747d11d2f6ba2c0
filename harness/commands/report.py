"""`maildrill report RUN_DIR`: rebuild every report of a run from its run directory alone."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rebuild a run's reports (summary.json, report.html/.md, junit.xml, figures) from its run directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a run directory, e.g. reports/<run-id>, or the combined directory of a repeat set "
                             "(reports/<run-id>-repeat: its members' reports are rebuilt, then the combined ones)")
    parser.add_argument("--no-history", action="store_true", help="do not rebuild the parent's index.html")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.report import write_repeat_reports, write_reports
    from maildrill.harness.report.run import is_repeat_dir

    if is_repeat_dir(args.run_dir):  # the combined directory of `maildrill run --repeat N`: rebuilt from its members
        rs = write_repeat_reports(args.run_dir, rebuild_members=True, history=not args.no_history)
        for line in rs.stability.summary_lines():
            print(line)
        print(f"report: {args.run_dir / 'report.html'}")
        return rs.stability.exit_code
    verdict = write_reports(args.run_dir, history=not args.no_history)
    for line in verdict.summary_lines():
        print(line)
    print(f"report: {args.run_dir / 'report.html'}")
    return verdict.exit_code
