"""`maildrill validate FILE...`: check scenario files without starting anything."""

from __future__ import annotations

import argparse
import sys

from maildrill.harness.errors import EXIT_PASS, EXIT_USAGE, ScenarioError

HELP = "check scenario files (every problem, with its path) without starting anything"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.scenario.loading import load_scenario

    code = EXIT_PASS
    for name in args.files:
        try:
            scenario = load_scenario(name)
        except ScenarioError as exc:
            print(str(exc), file=sys.stderr)
            code = EXIT_USAGE
            continue
        print(f"{name}: ok — {scenario.name}, {scenario.duration_s:g} s load, {len(scenario.mtas)} MTA(s), "
              + (f"{len(scenario.vendors)} vendor(s), " if scenario.vendors else "")
              + f"{len(scenario.timeline)} timeline action(s)")
    return code
