"""`maildrill scenarios`: the drills that ship with maildrill, each with its one-line purpose."""

from __future__ import annotations

import argparse

HELP = "list the bundled drills (run one with `maildrill run NAME`, read it with `maildrill show NAME`)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paths", action="store_true", help="also print where each file is installed")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.bundled import bundled_drills

    drills = bundled_drills()
    width = max(len(d.name) for d in drills)
    for d in drills:
        print(f"{d.name:<{width}}  {d.purpose}")
        if args.paths:
            print(f"{'':<{width}}  {d.path}")
    print(f"\n{len(drills)} drills. `maildrill show NAME` prints one; `maildrill run NAME` runs it; "
          "`maildrill init` writes a starter drill for your own app.")
    return 0
