"""`maildrill demo`: the retry storm and its fix — the bundled throttle-421-storm drill against the reference
mailer's naive and hardened retry policies, side by side (about two minutes; what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the retry-storm drill against a naive and a hardened mailer, side by side (~2 min; reports in ./reports)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="where the two run directories go (default: reports/ in the current directory)")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.demo import run_demo

    return run_demo(args.out)
