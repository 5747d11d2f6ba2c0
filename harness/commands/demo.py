"""`maildrill demo`: the retry storm and its fix — the bundled throttle-421-storm drill against the reference
mailer's naive and hardened retry policies, side by side (about two minutes; what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the retry-storm drill against a naive and a hardened mailer, side by side (~2 min; reports in ./reports)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="where the two run directories go (default: reports/ in the current directory)")
    parser.add_argument("--api", action="store_true", help="the API demo instead: SES losing responses, boto3 (~1 min)")


def main(args: argparse.Namespace) -> int:
    if args.api:  # the reference mailer on an email vendor's SDK (maildrill.harness.demo_api)
        return __import__("maildrill.harness.demo_api", fromlist=["main"]).main(["--out", str(args.out)])
    from maildrill.harness.demo import run_demo

    return run_demo(args.out)
