"""`maildrill mta`: run a fake MTA fleet standalone until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from maildrill.harness.aio import loop_name
from maildrill.harness.errors import AddressInUse, InfrastructureError, Problem, ScenarioError, UsageError

HELP = "run a fleet of fake MTAs (real SMTP) standalone, with its control API"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help="one MTA speaking as this provider: gmail, microsoft, yahoo, ses, postgrey, "
                                      "haraka (default: one MTA that accepts everything)")
    src.add_argument("--config", metavar="FLEET.yaml", help="a fleet config (YAML or JSON), see docs/fake-mta.md")
    parser.add_argument("--port", type=int, default=2525, help="SMTP port of the single MTA (default 2525; 0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host; the control API then requires a bearer token")
    parser.add_argument("--token", help="bearer token for the control API (generated when needed and not given)")
    parser.add_argument("--control-port", type=int, default=None, help="control API port (default: any free port)")
    parser.add_argument("--events", metavar="DIR", help="write events to DIR/mta-<pid>.jsonl")
    parser.add_argument("--events-flush-ms", type=float, default=0.0, metavar="MS",
                        help="keep events in memory and write them MS milliseconds after the first waiting one "
                             "and at stop (less CPU per request; a kill -9 loses at most the last MS of events). "
                             "Default 0: each event is handed to the OS before the reply it describes is sent")
    parser.add_argument("--processes", type=int, default=1,
                        help="serve each MTA from N processes sharing its port (SO_REUSEPORT); events merged by "
                             "reading DIR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the behaviours' probability draws")
    # used by --processes for the extra worker processes
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    # a worker's copy of the first process's webhook signing material (JSON file; see Fleet.webhook_material)
    parser.add_argument("--webhook-material", help=argparse.SUPPRESS)


def _fleet_spec(args: argparse.Namespace) -> Any:
    from maildrill.fake_mta.config import ConfigError, ControlSpec, FleetSpec, MTASpec, load_fleet_config

    try:
        if args.config:
            spec = load_fleet_config(args.config)
        else:
            name = args.preset or "mta"
            spec = FleetSpec(mtas=[MTASpec(name=name, preset=args.preset, host=args.host, port=args.port)])
    except ConfigError as exc:
        raise ScenarioError(exc.source, [_problem(p, m) for p, m in exc.problems]) from None
    except ValueError as exc:  # pydantic on flag values (e.g. --port 70000, unknown preset)
        raise UsageError(f"bad option: {exc}") from None
    control = spec.control
    updates: dict[str, Any] = {}
    if args.control_port is not None:
        updates["port"] = args.control_port
    if args.token:
        updates["token"] = args.token
    if not args.config and args.host != control.host:
        updates["host"] = args.host
    if updates:
        spec = spec.model_copy(update={"control": ControlSpec(**(control.model_dump() | updates))})
    return spec


def _problem(path: str, message: str) -> Problem:
    if message.startswith("= "):
        value, _, why = message[2:].partition(": ")
        return Problem(f"{path} = {value}", why)
    return Problem(path or "(file)", message)


def _check_hosts(spec: Any, allow_remote: bool) -> None:
    from maildrill.harness.netcheck import require_loopback

    for m in spec.mtas:
        require_loopback(f"fake MTA {m.name!r} host", m.host, allow_remote=allow_remote)
    for v in spec.vendors:
        require_loopback(f"fake vendor {v.name!r} host", v.host, allow_remote=allow_remote)
    require_loopback("control API host", spec.control.host, allow_remote=allow_remote)


def _reserve_ports(spec: Any) -> tuple[Any, list[socket.socket]]:
    """Bind (not listen) one SO_REUSEPORT socket per MTA so every process gets the same fixed port."""
    held: list[socket.socket] = []

    def reserve(m: Any, what: str) -> Any:
        sock = socket.socket(socket.AF_INET6 if ":" in m.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((m.host, m.port))
        except OSError as exc:
            sock.close()
            for s in held:
                s.close()
            raise AddressInUse(f"{what} {m.name!r}", m.host, m.port) from exc
        held.append(sock)
        return m.model_copy(update={"port": sock.getsockname()[1]})

    mtas = [reserve(m, "fake MTA") for m in spec.mtas]
    vendors = [reserve(v, "fake vendor") for v in spec.vendors]
    return spec.model_copy(update={"mtas": mtas, "vendors": vendors}), held


def main(args: argparse.Namespace) -> int:
    spec = _fleet_spec(args)
    _check_hosts(spec, args.allow_remote)
    paths = [f"vendors[{i}].webhooks.url = {v.webhooks.url!r}" for i, v in enumerate(spec.vendors)
             if v.webhooks is not None and v.webhooks.enabled and v.webhooks.url.startswith("/")]
    if paths:  # in a drill a path resolves against the SUT; standalone there is no SUT to resolve it against
        raise UsageError(f"{'; '.join(paths)}: a path on the system under test needs a drill to resolve it; "
                         "standalone, give the full URL (http://127.0.0.1:PORT/hooks/...)")
    if args.processes < 1:
        raise UsageError(f"--processes {args.processes}: must be >= 1")
    from maildrill.harness.store import MAX_FLUSH_MS

    if not 0 <= args.events_flush_ms <= MAX_FLUSH_MS:
        raise UsageError(f"--events-flush-ms {args.events_flush_ms:g}: must be between 0 and {MAX_FLUSH_MS}")
    visits = [f"vendors[{i}].webhooks.confirm = 'visit'" for i, v in enumerate(spec.vendors)
              if v.webhooks is not None and v.webhooks.enabled and v.webhooks.confirm == "visit"]
    if args.processes > 1 and visits:  # the SUT's visit reaches one process; the others would hold forever
        raise UsageError(f"{'; '.join(visits)}: with --processes {args.processes} the SUT's visit to the "
                         "SubscribeURL reaches only one of the processes; use confirm: answer, or one process")
    from maildrill.harness import aio  # uvloop when installed: about 2x the fake MTAs' and vendors' throughput

    return aio.run(_run(spec, args))


async def _run(spec: Any, args: argparse.Namespace) -> int:
    from maildrill.fake_mta.fleet import Fleet
    from maildrill.harness.clock import clock_from_env
    from maildrill.harness.store import EventWriter

    clock = clock_from_env()
    writer = (EventWriter(Path(args.events) / f"mta-{os.getpid()}.jsonl", "mta", clock, flush_ms=args.events_flush_ms)
              if args.events else None)
    held: list[socket.socket] = []
    workers: list[subprocess.Popen[bytes]] = []
    multi = args.processes > 1 or args.worker
    if args.processes > 1:
        spec, held = _reserve_ports(spec)
    if args.worker:  # a sibling's control API: loopback only, reached through the first process's
        spec = spec.model_copy(update={"control": spec.control.model_copy(update={"host": "127.0.0.1", "port": 0})})
    from maildrill.fake_mta.recording import NullRecorder

    # without --events nobody reads the events: keep none (an in-memory list would grow with every message)
    recorder = writer if writer is not None else NullRecorder()
    fleet = Fleet(spec, recorder=recorder, clock=clock, seed=args.seed, allow_remote=args.allow_remote,
                  reuse_port=multi)
    if args.webhook_material:  # sign webhooks with the first process's keys, which the SUT was given
        fleet.adopt_webhook_material(json.loads(Path(args.webhook_material).read_text()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await fleet.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise InfrastructureError(str(exc.strerror)) from None  # names the MTA, address and the fix
        if args.processes > 1:
            workers, fleet.peers = _start_workers(spec, args, fleet.control_token, fleet.webhook_material())
        for s in held:
            s.close()
        _print_ready(fleet, args, workers)
        await stop.wait()
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        await fleet.stop()
        if writer is not None:
            writer.close()
    print("maildrill mta: stopped", flush=True)
    return 0


def _start_workers(spec: Any, args: argparse.Namespace, token: str | None,
                   material: dict[str, dict[str, str]]) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    if token is not None:  # workers require the same token as this process's control API
        spec = spec.model_copy(update={"control": spec.control.model_copy(update={"token": token})})
    fd, path = tempfile.mkstemp(prefix="maildrill-fleet-", suffix=".json")  # mode 0600: it may hold a token
    with os.fdopen(fd, "w") as f:
        json.dump(spec.model_dump(mode="json"), f)
    fd, material_path = tempfile.mkstemp(prefix="maildrill-webhook-keys-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(material, f)
    workers = []
    for i in range(1, args.processes):
        # its own seed (its own ids and draws), the first process's webhook signing keys
        cmd = [sys.executable, "-m", "maildrill", "mta", "--config", path, "--worker", "--seed", str(args.seed + i),
               "--webhook-material", material_path]
        if args.events:
            cmd += ["--events", args.events, "--events-flush-ms", repr(args.events_flush_ms)]
        if args.allow_remote:
            cmd.append("--allow-remote")
        workers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE))
    peers = []
    try:
        for w in workers:  # each worker prints its control URL, then "ready" once it listens
            assert w.stdout is not None
            for raw in w.stdout:
                if raw.startswith(b"maildrill mta: control http"):
                    peers.append(raw.decode().split()[-1])
                if raw.startswith(b"maildrill mta: ready"):
                    break
            else:
                raise InfrastructureError(f"a worker process exited early (code {w.wait()}); run "
                                          "`maildrill mta --config ...` alone to see why")
    except BaseException:
        for w in workers:
            w.terminate()
            w.wait()
        raise
    finally:
        os.unlink(path)
        os.unlink(material_path)
    return workers, peers


def _print_ready(fleet: Any, args: argparse.Namespace, workers: list[Any]) -> None:
    for mta in fleet.mtas.values():
        preset = f" (preset {mta.spec.preset})" if mta.spec.preset else ""
        print(f"maildrill mta: {mta.name} smtp://{mta.host}:{mta.port}{preset}", flush=False)
    for vendor in fleet.vendors.values():
        print(f"maildrill mta: {vendor.name} {vendor.base_url}", flush=False)
        if vendor.webhooks is not None:  # where its webhooks go, and what verifies their signatures
            key = vendor.webhooks.verification_key
            shown = f" verification key {key}" if key and "\n" not in key else ""
            print(f"maildrill mta: {vendor.name} webhooks {vendor.webhooks.url}{shown}", flush=False)
    if fleet.control_url:
        print(f"maildrill mta: control {fleet.control_url}", flush=False)
        if fleet.control_token:
            print(f"maildrill mta: control token {fleet.control_token} (send 'Authorization: Bearer <token>')")
    if args.events:
        print(f"maildrill mta: events {Path(args.events) / f'mta-{os.getpid()}.jsonl'}")
    if workers:
        print(f"maildrill mta: {len(workers) + 1} processes share each port (pids {os.getpid()} "
              f"{' '.join(str(w.pid) for w in workers)}); control API changes are forwarded to all")
    print(f"maildrill mta: ready ({loop_name()}; Ctrl-C or SIGTERM stops)", flush=True)
