"""`maildrill worker --master HOST[:PORT]`: a Locust worker of a drill whose master runs elsewhere."""

from __future__ import annotations

import argparse

HELP = "join a drill's load from this machine: a Locust worker of the master `maildrill run` started"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", metavar="HOST[:PORT]",
                        help="the Locust master (`maildrill run --expect-workers M --master-bind ...`); "
                             "port 5557 when left out")
    parser.add_argument("--index", type=int, metavar="I",
                        help="ask for this share of the arrivals (0-based); by default the master gives the free "
                             "ones in the order workers join")
    parser.add_argument("--loglevel", default="WARNING", help="Locust's log level (default WARNING)")
    parser.add_argument("--locustfile", action="store_true",
                        help="print the path of maildrill's locustfile (for plain `locust --worker -f PATH`) and exit")


def main(args: argparse.Namespace) -> int:
    import os
    import sys

    from maildrill.harness.errors import UsageError
    from maildrill.harness.load.link import INDEX_HINT_ENV, parse_host_port
    from maildrill.harness.load.process import DEFAULT_MASTER_PORT, LOCUSTFILE, worker_command, worker_env

    if args.locustfile:
        print(LOCUSTFILE)
        return 0
    if not args.master:
        raise UsageError("--master HOST[:PORT] is required (the address `maildrill run` printed for its master)")
    host, port = parse_host_port(args.master, "--master")
    if args.index is not None and args.index < 0:
        raise UsageError(f"--index {args.index}: must be 0 or more")
    env = worker_env()
    if args.index is not None:
        env[INDEX_HINT_ENV] = str(args.index)
    # this process becomes the Locust worker (exec): its PID is the worker's, a signal to it reaches Locust;
    # it ends when the master says the drill is over
    cmd = worker_command(host, port or DEFAULT_MASTER_PORT, "--loglevel", args.loglevel)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)
    return 3  # not reached
