"""`maildrill schema`: print (or write) the scenario file's JSON Schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "print the JSON Schema of scenario files (for editor completion and validation)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", type=Path, help="write it to this file instead of stdout")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.scenario.schema import schema_text

    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
