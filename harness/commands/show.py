"""`maildrill show NAME`: print a bundled drill's YAML (to read it, or to copy it and make it yours)."""

from __future__ import annotations

import argparse
import sys

HELP = "print a bundled drill's YAML, e.g. `maildrill show throttle-421-storm > my-drill.yaml`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a bundled drill (`maildrill scenarios` lists them)")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.bundled import bundled_drill, bundled_drills
    from maildrill.harness.errors import UsageError

    drill = bundled_drill(args.name)
    if drill is None:
        names = ", ".join(d.name for d in bundled_drills())
        raise UsageError(f"no bundled drill named {args.name!r}; bundled drills: {names}")
    sys.stdout.write(drill.path.read_text(encoding="utf-8"))
    return 0
