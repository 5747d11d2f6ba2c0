"""`maildrill history [REPORTS_DIR]`: rebuild the rehearsal history page (REPORTS_DIR/index.html)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rebuild reports/index.html: every run, its verdict and each scenario's metric trends"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", type=Path, nargs="?", default=Path("reports"), metavar="REPORTS_DIR",
                        help="the directory holding run directories (default reports/)")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.errors import UsageError
    from maildrill.harness.report.history import write_index

    if not args.reports.is_dir():
        raise UsageError(f"{args.reports}: no such directory (give the directory `maildrill run --out` wrote to)")
    path = write_index(args.reports)
    print(f"history: {path}")
    return 0
