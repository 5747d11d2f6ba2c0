"""`maildrill mailer ...`: the reference mailer, the same as `python -m maildrill.examples.mailer ...`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

HELP = "run the reference mailer (same as `python -m maildrill.examples.mailer`; `maildrill mailer --help`)"
# Every argument after `mailer` is the mailer's own (its --help included): the CLI hands them over unparsed.
PASSTHROUGH = True


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mailer_args", nargs=argparse.REMAINDER, metavar="ARG", help="the mailer's flags")


def main(args: argparse.Namespace) -> int:
    return run(args.mailer_args)


def run(argv: Sequence[str]) -> int:
    from maildrill.examples.mailer.service import main as mailer_main

    return int(mailer_main(list(argv)))
