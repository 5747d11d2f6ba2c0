"""Drill pieces that need no subprocess: timeline fire/undo bookkeeping, probe parsing, live counts, manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from maildrill.harness.clock import MonotonicClock
from maildrill.harness.run.probe import command_value, prometheus_value
from maildrill.harness.run.rundir import create_run_dir, read_manifest, update_manifest
from maildrill.harness.run.status import StatusDisplay, Tracker, status_line
from maildrill.harness.run.timeline import Timeline
from maildrill.harness.scenario import parse_scenario_text
from maildrill.harness.store import EventStore, EventWriter

SCENARIO = """\
version: 1
name: parts
duration_s: 5
mtas: [{name: primary}]
proxies: [{name: p1, upstream: primary}]
load:
  shape: {kind: constant, rps: 1}
  classes: [{name: otp, smtp: {host: 127.0.0.1, port: 2525}}]
timeline:
  - {at_s: 0.05, mta: primary, set: [{kind: tempfail}], for_s: 0.1}
  - {at_s: 0.1, proxy: p1, toxic: {type: latency, attributes: {latency: 100}}, for_s: 0.1}
  - {at_s: 0.12, proxy: p1, enabled: false}
"""


class FakeMTA:
    def __init__(self) -> None:
        self.behaviors: list[Any] = ["initial"]
        self.calls: list[list[Any]] = []

    def set_behaviors(self, behaviors: list[Any], *, by: str = "api") -> None:
        assert by == "timeline"
        self.behaviors = behaviors
        self.calls.append(behaviors)


class FakeProxy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def add_toxic(self, proxy: str, *, type: str, attributes: dict[str, Any], stream: str = "downstream",
                  toxicity: float = 1.0, name: str | None = None) -> str:
        self.calls.append(("add", proxy, type, attributes, stream, toxicity))
        return "latency_downstream"

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self.calls.append(("remove", proxy, toxic))

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.calls.append(("enabled", name, enabled))


def test_timeline_fires_records_and_undoes(tmp_path: Path) -> None:
    scenario = parse_scenario_text(SCENARIO)
    clock = MonotonicClock()
    writer = EventStore(tmp_path).writer("run", "run", clock)
    mta, proxy = FakeMTA(), FakeProxy()
    degraded: list[tuple[str, str]] = []
    timeline = Timeline(list(scenario.timeline), writer=writer, clock=clock, mtas={"primary": mta}, proxy=proxy,
                        on_degraded=lambda c, r: degraded.append((c, r)))

    async def go() -> None:
        timeline.start(clock.now())
        await asyncio.wait_for(_until(lambda: len(proxy.calls) == 3 and len(mta.calls) == 2), 30)
        assert timeline.active == {2: "proxy/p1 disable"}
        await timeline.stop()

    asyncio.run(go())
    assert [type(b).__name__ for b in mta.calls[0]] == ["TempfailSpec"]
    assert mta.calls[1] == ["initial"]
    assert proxy.calls == [("add", "p1", "latency", {"latency": 100.0}, "downstream", 1.0),
                           ("enabled", "p1", False), ("remove", "p1", "latency_downstream")]
    assert degraded == []
    events = EventStore(tmp_path).events()
    got = [(e.kind, e["action"], e["target"], e["what"]) for e in events]
    assert got == [("run.action.fired", 0, "mta/primary", "set tempfail"),
                   ("run.action.fired", 1, "proxy/p1", "toxic latency downstream"),
                   ("run.action.fired", 2, "proxy/p1", "disable"),
                   ("run.action.undone", 0, "mta/primary", "set tempfail"),
                   ("run.action.undone", 1, "proxy/p1", "toxic latency downstream")]
    fired = [e for e in events if e.kind == "run.action.fired"]
    assert [e["until_t_s"] is None for e in fired] == [False, False, True]


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.005)


def test_timeline_failure_is_recorded_as_degraded(tmp_path: Path) -> None:
    scenario = parse_scenario_text(SCENARIO)
    clock = MonotonicClock()
    writer = EventStore(tmp_path).writer("run", "run", clock)
    degraded: list[tuple[str, str]] = []
    timeline = Timeline(list(scenario.timeline)[1:2], writer=writer, clock=clock, mtas={}, proxy=None,
                        on_degraded=lambda c, r: degraded.append((c, r)))

    async def go() -> None:
        timeline.start(clock.now())
        await asyncio.wait_for(_until(lambda: degraded), 30)

    asyncio.run(go())
    assert degraded == [("timeline",
                         "timeline[0] (proxy/p1 toxic latency downstream) failed: no fault proxy is running")]


def test_prometheus_and_command_values() -> None:
    text = ('# HELP q depth\n# TYPE q gauge\nmailer_queue_depth 17\nmailer_lane_depth{lane="bulk"} 3\n'
            'mailer_lane_depth{lane="transactional"} 4\n')
    assert prometheus_value(text, "mailer_queue_depth") == 17
    assert prometheus_value(text, "mailer_lane_depth") == 7
    assert prometheus_value(text, 'mailer_lane_depth{lane="bulk"}') == 3
    assert prometheus_value(text, "absent") is None
    assert command_value(b"Mail queue is empty\n") is None
    assert command_value(b"-- 12 Kbytes in 42 Requests.\n") == 12
    assert command_value(b"42\n") == 42


def test_tracker_counts_and_status_line(tmp_path: Path) -> None:
    clock = MonotonicClock()
    load = EventWriter(tmp_path / "load-1.jsonl", "load/0", clock)
    mta = EventWriter(tmp_path / "mta.jsonl", "mta/primary", clock)
    for k in range(4):
        load.record("load.request.completed", f"u{k}", ok=k != 3)
    mta.record("mta.reply.sent", "u0", code=451)
    mta.record("mta.message.accepted", "u0")
    mta.record("mta.message.accepted", "u0")
    mta.record("mta.message.accepted", "u1")
    with open(tmp_path / "mta.jsonl", "a") as f:
        f.write('{"t_s": 1, "kind": "mta.message.accep')  # a line still being written is read later
    snap = Tracker(tmp_path).poll(1.0)
    assert (snap.requests, snap.requests_ok, snap.requested, snap.delivered, snap.outstanding) == (4, 3, 3, 2, 1)
    assert (snap.accepted, snap.deferred, round(snap.deferred_ratio, 3)) == (3, 1, 0.25)
    line = status_line(snap, phase="load", elapsed_s=3.0, faults=["mta/primary set go_dark(refuse)"])
    assert line == ("[   3.0s load    ]    4.0 req/s  requests 4  delivered 2/3  outstanding 1  deferred 25.0%  "
                    "faults: mta/primary set go_dark(refuse)")


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.text = ""
        self.tty = tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_status_display_modes() -> None:
    tty, plain, quiet = _Stream(True), _Stream(False), _Stream(False)
    for stream, q in ((tty, False), (plain, False), (quiet, True)):
        d = StatusDisplay(stream, quiet=q)  # type: ignore[arg-type]
        d.show("first line")
        d.show("second")
        d.done()
    assert tty.text == "\rfirst line\rsecond    \n"
    assert plain.text == "first line\nsecond\n"
    assert quiet.text == ""


def test_run_dir_and_manifest(tmp_path: Path) -> None:
    scenario = parse_scenario_text(SCENARIO)
    rd = create_run_dir(tmp_path, scenario, seed=9, scenario_file="s.yaml", reproduce=["maildrill", "run", "s.yaml"])
    rd2 = create_run_dir(tmp_path, scenario, seed=9, scenario_file="s.yaml", reproduce=["maildrill", "run", "s.yaml"])
    assert rd.path != rd2.path
    m = read_manifest(rd.path)
    assert (m["schema"], m["version"], m["status"], m["seed"], m["reproduce"]) == (
        "maildrill.manifest", 1, "running", 9, "maildrill run s.yaml")
    assert json.loads((rd.path / "scenario.json").read_text())["seed"] == 9
    update_manifest(rd.path, status="completed")
    assert read_manifest(rd.path)["status"] == "completed"
    assert sorted(p.name for p in rd.path.iterdir()) == ["events", "load", "locust", "manifest.json", "scenario.json",
                                                          "scenario.yaml", "sut"]
