"""`maildrill run SCENARIO`: run a drill and leave its run directory (and report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run a drill: fake MTAs, fault proxy, SUT, Locust load and the fault timeline"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO",
                        help="a scenario YAML file, or the name of a bundled drill (`maildrill scenarios`)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override one scenario value (YAML), e.g. --set load.shape.peak_rps=50 or "
                             "--set 'sut.command=[python, -m, maildrill.examples.mailer, --profile, hardened]'; "
                             "repeatable")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where run directories go (default reports/)")
    parser.add_argument("--sut-url",
                        help="drive a SUT already running at this URL (sut.command is not started)")
    parser.add_argument("--toxiproxy-url", help="use this Toxiproxy server instead of the embedded proxy")
    parser.add_argument("--toxiproxy-server", action="store_true",
                        help="start the real toxiproxy-server found on PATH for this drill (stopped afterwards)")
    parser.add_argument("--compose", action="store_true",
                        help="use a real Toxiproxy container (the image compose/docker-compose.yml names), started "
                             "through the docker SDK and removed afterwards")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow non-loopback SUT, MTA and Toxiproxy addresses (only systems you own)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run Locust distributed: a master and N local worker processes (default: one process)")
    parser.add_argument("--expect-workers", type=int, default=0, metavar="M",
                        help="also wait for M remote workers (`maildrill worker --master HOST:PORT` on other "
                             "machines) to join the Locust master; see docs/scaling.md")
    parser.add_argument("--master-bind", metavar="HOST[:PORT]",
                        help="where the Locust master listens (default 127.0.0.1; port 5557 with --expect-workers, "
                             "any free one otherwise); a non-loopback address needs --allow-remote")
    parser.add_argument("--worker-wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long the master waits for every worker to join; after that the drill runs on "
                             "the ones that did, marked degraded (default 60)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no live status line (for CI logs)")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="run the drill N times (seeds seed, seed+1, ...) and judge how stable its verdict is: "
                             "stable pass (exit 0), stable fail or flaky (exit 1); the combined report goes to "
                             "<run-id>-repeat/ beside the N run directories")
    parser.add_argument("--same-seed", action="store_true", help="with --repeat: give every run the same seed")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.errors import UsageError
    from maildrill.harness.run.drill import RunOptions, run_drill
    from maildrill.harness.scenario.loading import load_scenario

    if args.workers < 0 or args.workers > 64:
        raise UsageError(f"--workers {args.workers}: must be 0 (one process) to 64")
    if args.expect_workers < 0 or args.expect_workers > 1024:
        raise UsageError(f"--expect-workers {args.expect_workers}: must be 0 to 1024")
    if not args.worker_wait > 0:
        raise UsageError(f"--worker-wait {args.worker_wait:g}: must be more than 0 seconds")
    if args.master_bind is not None:
        from maildrill.harness.load.link import parse_host_port

        parse_host_port(args.master_bind, "--master-bind")
    if args.repeat is not None:
        from maildrill.harness.run.repeat import MAX_REPEAT

        if not 1 <= args.repeat <= MAX_REPEAT:
            raise UsageError(f"--repeat {args.repeat}: must be 1 to {MAX_REPEAT} (the number of runs)")
    if args.same_seed and args.repeat is None:
        raise UsageError("--same-seed needs --repeat N (it sets the seed of every repeated run)")
    from maildrill.harness.bundled import resolve_scenario

    scenario = load_scenario(resolve_scenario(args.scenario), args.overrides)
    if args.compose or args.toxiproxy_server:
        import contextlib
        import os

        if sum(map(bool, (args.compose, args.toxiproxy_server, args.toxiproxy_url))) > 1:
            raise UsageError("give one of --toxiproxy-url, --toxiproxy-server and --compose")
        with contextlib.ExitStack() as stack:
            if args.compose:
                from maildrill.harness.run.compose import compose_toxiproxy

                args.toxiproxy_url = stack.enter_context(compose_toxiproxy(f"{scenario.name}-{os.getpid()}"))
            else:
                from maildrill.harness.faults.real import toxiproxy_server

                args.toxiproxy_url = stack.enter_context(toxiproxy_server())
            args.compose = args.toxiproxy_server = False
            return main(args)
    options = RunOptions(seed=args.seed, out=args.out, sut_url=args.sut_url, toxiproxy_url=args.toxiproxy_url,
                         allow_remote=args.allow_remote, workers=args.workers, quiet=args.quiet,
                         expect_workers=args.expect_workers, master_bind=args.master_bind,
                         worker_wait_s=args.worker_wait,
                         scenario_file=args.scenario, overrides=tuple(args.overrides))
    if args.repeat is not None:
        from maildrill.harness.run.repeat import run_repeats

        repeated = run_repeats(scenario, options, repeat=args.repeat, same_seed=args.same_seed)
        for line in repeated.summary:
            print(line, file=sys.stdout if repeated.exit_code in (0, 1) else sys.stderr)
        return repeated.exit_code
    result = run_drill(scenario, options)
    out = sys.stdout if result.exit_code in (0, 1) else sys.stderr
    for line in result.summary:
        print(line, file=out)
    return result.exit_code
