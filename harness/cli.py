"""The `maildrill` command: the only reader of argv; maps errors to exit codes (see harness/errors.py).

Each subcommand lives in `harness/commands/<name>.py` with ``HELP``, ``configure(parser)`` and
``main(args) -> int``; one with ``PASSTHROUGH = True`` gets every later argument unparsed through
``run(argv) -> int`` (`maildrill mailer --help` is the mailer's help). Command modules keep their
top-level imports light: this module imports all of them to build the parser, and `maildrill validate`
must start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from maildrill.harness.errors import EXIT_INFRA, EXIT_USAGE, MaildrillError

# name -> module; the order is the order `maildrill --help` lists them in.
COMMANDS = {
    "demo": "maildrill.harness.commands.demo",
    "scenarios": "maildrill.harness.commands.scenarios",
    "show": "maildrill.harness.commands.show",
    "init": "maildrill.harness.commands.init",
    "run": "maildrill.harness.commands.run",
    "validate": "maildrill.harness.commands.validate",
    "schema": "maildrill.harness.commands.schema",
    "report": "maildrill.harness.commands.report",
    "compare": "maildrill.harness.commands.compare",
    "history": "maildrill.harness.commands.history",
    "mta": "maildrill.harness.commands.mta",
    "proxy": "maildrill.harness.commands.proxy",
    "worker": "maildrill.harness.commands.worker",
    "mailer": "maildrill.harness.commands.mailer",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maildrill")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maildrill",
        description="Load-and-chaos drills for transactional email.",
        epilog="Exit codes: 0 pass, 1 thresholds failed, 2 bad usage or scenario, 3 infrastructure failure.",
    )
    parser.add_argument("--version", action="version", version=f"maildrill {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command not built yet
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:  # a command that takes its arguments unparsed (`maildrill mailer --help`)
        module = importlib.import_module(COMMANDS[argv[0]])
        if getattr(module, "PASSTHROUGH", False):
            return int(module.run(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args._main(args))
    except MaildrillError as exc:
        print(f"maildrill {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"maildrill {args.command}: interrupted", file=sys.stderr)
        return EXIT_INFRA


if __name__ == "__main__":
    sys.exit(main())
