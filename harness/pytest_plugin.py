"""maildrill's pytest plugin (registered through the `pytest11` entry point): fixtures for testing code that
sends mail against scripted fake MTAs and the fault proxy, and for running whole drills.

Loaded in every pytest session of anyone who installs maildrill, so it imports only pytest and the standard
library at module top; everything else is imported when a fixture is used.

Fixtures (a `make_<thing>` factory and a ready `<thing>`):
- `make_fake_mta(name="mta", behaviors=None, preset=None, **spec)`: start a fake MTA (real SMTP on 127.0.0.1,
  a free port); returns a `FakeMTAHandle` (host, port, set_behaviors, reset, events, accepted).
- `fake_mta`: one MTA that accepts everything (`make_fake_mta()`).
- `mail_events`: every event the test's MTAs (and `fault_proxy`) recorded: `events()`, `wait_for(pred, timeout_s)`.
- `fault_proxy`: the embedded Toxiproxy-compatible proxy (or `--toxiproxy-url`), as a `ToxiproxyAdapter` with
  `proxy_for(handle)` to put a proxy in front of a fake MTA.
- `drill(scenario, *overrides, **options)`: run a scenario file or dict; returns `DrillResult`.
Options: `--maildrill-seed N` (default 0), `--maildrill-keep-runs` (drills write under reports/ instead of
tmp), `--toxiproxy-url URL`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("maildrill", "maildrill: load-and-chaos tests for code that sends email")
    group.addoption("--maildrill-seed", type=int, default=0,
                    help="seed of the fake MTAs' probability draws, the fault proxy and drills (default 0)")
    group.addoption("--maildrill-keep-runs", action="store_true",
                    help="drills write their run directories under reports/ (kept) instead of a tmp dir")
    group.addoption("--toxiproxy-url", default=None,
                    help="use this real Toxiproxy for fault_proxy and drills instead of the embedded proxy")


class MailEvents:
    """The events of a test's fake MTAs and fault proxy (JSON Lines in a tmp dir), with `wait_for`."""

    def __init__(self, directory: Path, reproduce: str) -> None:
        from maildrill.harness.store import EventStore

        self.directory = directory
        self.store = EventStore(directory)
        self.reproduce = reproduce
        self.scenario: dict[str, Any] | None = None

    def events(self) -> list[Any]:
        return self.store.events()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events()]

    def wait_for(self, predicate: Callable[[list[Any]], object], timeout_s: float = 10.0, *,
                 what: str = "condition") -> list[Any]:
        return self.store.wait_for(predicate, timeout_s, what=what)

    def writer(self, name: str, source: str) -> Any:
        return self.store.writer(name, source)


@dataclass
class FakeMTAHandle:
    name: str
    host: str
    port: int
    _thread: Any
    _mta: Any
    _events: MailEvents

    def set_behaviors(self, behaviors: list[Any]) -> None:
        """Replace the MTA's behaviours (dicts as in a fleet config, e.g. {"kind": "throttle", "rate_per_s": 1})."""
        async def apply() -> None:
            self._mta.set_behaviors(list(behaviors))

        self._thread.run(apply())

    def reset(self) -> None:
        async def apply() -> None:
            self._mta.reset()

        self._thread.run(apply())

    def events(self) -> list[Any]:
        return [e for e in self._events.events() if e.source == f"mta/{self.name}"]

    def accepted(self) -> list[Any]:
        """`mta.message.accepted` events of this MTA, in order."""
        return [e for e in self.events() if e.kind == "mta.message.accepted"]


@pytest.fixture
def mail_events(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MailEvents:
    seed = request.config.getoption("--maildrill-seed")
    reproduce = f"pytest {request.node.nodeid} --maildrill-seed {seed}"
    return MailEvents(tmp_path_factory.mktemp("maildrill-events"), reproduce)


@pytest.fixture
def make_fake_mta(request: pytest.FixtureRequest, mail_events: MailEvents) -> Iterator[Callable[..., FakeMTAHandle]]:
    from maildrill.fake_mta.config import FleetSpec
    from maildrill.fake_mta.testing import FleetThread

    seed = request.config.getoption("--maildrill-seed")
    started: list[Any] = []

    def make(name: str = "mta", behaviors: list[Any] | None = None, preset: str | None = None,
             **spec: Any) -> FakeMTAHandle:
        mta_spec: dict[str, Any] = {"name": name, "host": "127.0.0.1", "port": 0, **spec}
        if behaviors is not None:
            mta_spec["behaviors"] = behaviors
        if preset is not None:
            mta_spec["preset"] = preset
        fleet_spec = FleetSpec.model_validate({"mtas": [mta_spec]})
        writer = mail_events.writer(f"mta-{name}-{len(started)}", "mta")
        thread = FleetThread(fleet_spec, recorder=writer, seed=seed, control=False)
        thread.__enter__()
        started.append((thread, writer))
        mta = thread.fleet[name]
        return FakeMTAHandle(name, mta.host, mta.port, thread, mta, mail_events)

    yield make
    for thread, writer in reversed(started):
        with contextlib.suppress(Exception):
            thread.__exit__(None, None, None)
        writer.close()


@pytest.fixture
def fake_mta(make_fake_mta: Callable[..., FakeMTAHandle]) -> FakeMTAHandle:
    return make_fake_mta()


class FaultProxy:
    """A `ToxiproxyAdapter` for the test's proxy server, plus `proxy_for(mta)`."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def proxy_for(self, mta: FakeMTAHandle, name: str | None = None) -> Any:
        """Create a proxy in front of `mta`; returns its ProxyInfo (listen_host, listen_port)."""
        return self.adapter.create_proxy(name or mta.name, upstream=f"{mta.host}:{mta.port}")


@pytest.fixture
def fault_proxy(request: pytest.FixtureRequest, mail_events: MailEvents) -> Iterator[FaultProxy]:
    from maildrill.harness.faults import EmbeddedToxiproxyThread, ToxiproxyAdapter

    url = request.config.getoption("--toxiproxy-url")
    writer = mail_events.writer("proxy", "proxy")
    if url:
        adapter = ToxiproxyAdapter(url, timeout_s=5, recorder=writer)
        adapter.version()
        yield FaultProxy(adapter)
        for name in list(adapter.proxies()):
            adapter.delete_proxy(name)
    else:
        with EmbeddedToxiproxyThread(seed=request.config.getoption("--maildrill-seed")) as server:
            yield FaultProxy(ToxiproxyAdapter(server.url, timeout_s=5, recorder=writer))
    writer.close()


@dataclass
class DrillResult:
    run_dir: Path
    exit_code: int
    status: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.summary.get("metrics", {}))

    @property
    def reproduce(self) -> str | None:
        return self.summary.get("run", {}).get("reproduce")

    def events(self) -> list[Any]:
        from maildrill.harness.store import EventStore

        return EventStore(self.run_dir / "events").events()


@pytest.fixture
def drill(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DrillResult]:
    def run(scenario: str | Path | dict[str, Any], *overrides: str, seed: int | None = None,
            **options: Any) -> DrillResult:
        from maildrill.harness.run.drill import RunOptions, run_drill
        from maildrill.harness.scenario.loading import apply_overrides, load_scenario, parse_scenario

        if isinstance(scenario, dict):
            data = apply_overrides(json.loads(json.dumps(scenario)), overrides) if overrides else scenario
            parsed, source = parse_scenario(data, source="(in-test scenario)"), None
        else:
            from maildrill.harness.bundled import resolve_scenario

            parsed, source = load_scenario(resolve_scenario(scenario), overrides), str(scenario)
        keep = request.config.getoption("--maildrill-keep-runs")
        out = Path("reports") if keep else tmp_path_factory.mktemp("maildrill-runs")
        opts = RunOptions(seed=seed if seed is not None else request.config.getoption("--maildrill-seed"),
                          out=out, quiet=True, scenario_file=source, overrides=tuple(overrides),
                          toxiproxy_url=request.config.getoption("--toxiproxy-url"), **options)
        result = run_drill(parsed, opts)
        summary_path = result.run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return DrillResult(result.run_dir, result.exit_code, str(result.status), summary)

    return run
