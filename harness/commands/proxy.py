"""`maildrill proxy`: the embedded Toxiproxy-compatible fault proxy, standalone, until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from maildrill.harness.aio import loop_name
from maildrill.harness.errors import AddressInUse, InfrastructureError, Problem, ScenarioError, UsageError

HELP = "run the embedded fault proxy: Toxiproxy's HTTP API (toxiproxy-cli and client libraries work with it)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8474, help="API port (default 8474, Toxiproxy's; 0: any free)")
    parser.add_argument("--config", type=Path, metavar="PROXIES.json",
                        help="proxies to create at start: Toxiproxy's populate format, a JSON list of "
                             "{name, listen, upstream, enabled}")
    parser.add_argument("--seed", type=int, help="seed of the toxicity draws and jitter (default: random)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host and proxy listen/upstream addresses (only on networks "
                             "you own); the API then requires a bearer token")
    parser.add_argument("--token", help="with --allow-remote: the API's bearer token (default: generated and "
                                        "printed at start)")


def _config(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        why = f"cannot read the file ({exc.strerror}); check the path"
        raise ScenarioError(str(path), [Problem("(file)", why)]) from None
    except ValueError as exc:
        raise ScenarioError(str(path), [Problem("(file)", f"not valid JSON: {exc}")]) from None
    if not isinstance(data, list):
        raise ScenarioError(str(path), [Problem("(top level)", "must be a JSON list of proxies "
                                                                "[{name, listen, upstream, enabled}]")])
    problems = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(Problem(f"[{i}]", "must be an object {name, listen, upstream, enabled}"))
            continue
        for key in ("name", "upstream"):
            if not isinstance(item.get(key), str) or not item.get(key):
                problems.append(Problem(f"[{i}].{key}", "required: a non-empty string"))
        unknown = set(item) - {"name", "listen", "upstream", "enabled"}
        if unknown:
            problems.append(Problem(f"[{i}]", f"unknown keys {sorted(unknown)}; allowed: name, listen, upstream, "
                                              f"enabled"))
    if problems:
        raise ScenarioError(str(path), problems)
    return data


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.netcheck import require_loopback

    require_loopback("maildrill proxy --host", args.host, allow_remote=args.allow_remote)
    config = _config(args.config) if args.config else []
    from maildrill.harness import aio

    return aio.run(_serve(args, config))  # uvloop relays about 1.3x faster than asyncio's own loop


async def _serve(args: argparse.Namespace, config: list[dict[str, Any]]) -> int:
    from maildrill.harness.faults.embedded import APIError, EmbeddedToxiproxy

    server = EmbeddedToxiproxy(args.host, args.port, args.seed, allow_remote=args.allow_remote,
                               token=args.token if args.allow_remote else None)
    try:
        await server.__aenter__()
    except OSError as exc:
        raise AddressInUse("maildrill proxy API", args.host, args.port) from exc
    try:
        for item in config:
            try:
                await server.create(item)
            except APIError as exc:
                where = f"{args.config}: proxy {item.get('name')!r}"
                if exc.status >= 500:
                    raise InfrastructureError(f"{where}: {exc}") from None
                raise UsageError(f"{where}: {exc}") from None
        print(f"maildrill proxy: Toxiproxy API on {server.url}", flush=True)
        if server.token is not None:
            print(f"  API token (send 'Authorization: Bearer <token>'): {server.token}", flush=True)
        for p in server.proxies.values():
            print(f"  proxy {p.name}: {p.listen} -> {p.upstream}{'' if p.enabled else ' (disabled)'}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"ready ({loop_name()}; Ctrl-C to stop)", flush=True)
        await stop.wait()
    finally:
        await server.__aexit__(None, None, None)
    print("maildrill proxy: stopped", flush=True)
    return 0
