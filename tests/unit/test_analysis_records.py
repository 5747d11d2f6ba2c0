"""The bounded read that `maildrill report` uses (flat records parsed by orjson, `join_records`) gives exactly what
the Event path gives: the same lines accepted, the same problems listed, the same whole analysis — and the model's
ground truth."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maildrill.harness.analysis import analyze
from maildrill.harness.analysis.synthetic import Model, events, random_model
from maildrill.harness.report.run import analyse_run
from maildrill.harness.store import EventStore, EventWriter

from tests.unit.test_analysis_groundtruth import assert_matches, models


def write_run(d: Path, model: Model, files: int, rnd: random.Random) -> None:
    (d / "events").mkdir(parents=True)
    (d / "scenario.json").write_text(json.dumps(model.scenario()))
    (d / "manifest.json").write_text(json.dumps({"run_id": d.name, "scenario": "synthetic", "status": "completed"}))
    writers = [EventWriter(d / "events" / f"{'run' if i == 0 else 'w'}{i}.jsonl", f"w{i}") for i in range(files)]
    for e in events(model):
        (writers[0] if e.source == "run" else rnd.choice(writers)).write(e)
    for w in writers:
        w.close()


def same_analysis(a: object, b: object) -> None:
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        assert getattr(a, f.name) == getattr(b, f.name), f.name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models(), st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
def test_a_run_directory_analysed_from_records_equals_the_event_path_and_the_model(
        tmp_path_factory: pytest.TempPathFactory, model: Model, files: int, rnd: random.Random) -> None:
    d = Path(tmp_path_factory.mktemp("run"))
    write_run(d, model, files, rnd)
    _, got, _ = analyse_run(d)
    assert got.skipped == ()
    same_analysis(got, analyze(events(model), model.scenario()))
    assert_matches(model, dict(got.metrics))
    for cls in {m.cls for m in model.messages}:
        assert_matches(model, dict(got.by_class[cls]), cls)


def test_a_bigger_random_drill_gives_the_same_whole_analysis(tmp_path: Path) -> None:
    model = random_model(3000, seed=7, duration_s=300.0)
    write_run(tmp_path, model, 3, random.Random(3))
    _, got, _ = analyse_run(tmp_path)
    same_analysis(got, analyze(events(model), model.scenario()))


BAD_LINES = [
    b'{"t_s": 1, "source": "mta/a", "kind": "mta.reply.sent", "corr": "u1", "conn": 1, "txn": 1, "code": 250}',
    b'{"t_s": NaN, "source": "mta/a", "kind": "mta.connection.opened", "conn": 2}',  # the standard library reads it
    b'{"t_s": 2.5, "source": "mta/a", "kind": "mta.reply.sent", "conn": 123456789012345678901234567890, "txn": 1}',
    b'{"t_s": true, "source": "mta/a", "kind": "x"}',
    b'{"t_s": 3.0, "source": 7, "kind": "x"}',
    b'{"t_s": 3.0, "source": "mta/a", "kind": "x", "corr": 5}',
    b'{"source": "mta/a", "kind": "x"}',
    b'[1, 2]',
    b'not json',
    b'   ',
    b'{"t_s": 4.0, "source": "mta/a", "kind": "mta.message.accepted", "corr": "u\\u00e9", "conn": 1, "txn": 1}',
    b'{"t_s": 5.0, "source": "mta/a", "kind": "x", "text": "\\ud800"}',  # a lone surrogate: orjson refuses it
    # integers just beyond 64 bits (orjson reads them as floats), a float as large, and a nested value
    b'{"t_s": 7.0, "source": "mta/a", "kind": "y", "n": -9223372036854775809, "m": -9223372036854775808}',
    b'{"t_s": 7.5, "source": "mta/a", "kind": "y", "n": 18446744073709551616, "m": 18446744073709551615}',
    b'{"t_s": 8.0, "source": "mta/a", "kind": "y", "n": 1e19, "m": -1.5e300}',
    b'{"t_s": 8.5, "source": "mta/a", "kind": "y", "n": [1, 123456789012345678901234]}',
    b'\xff\xfe',
    b'{"t_s": 6.0, "source": "mta/a", "kind": "mta.reply.sent", "corr": null, "code": 421',  # truncated last line
]


def write_damaged(d: Path, *, header: bool) -> None:
    """mta-a.jsonl: BAD_LINES (after a header line when `header`); old.jsonl: a file of another schema version."""
    lines = ([b'{"schema": "maildrill.events", "version": 1, "source": "mta/a"}'] if header else []) + BAD_LINES
    (d / "mta-a.jsonl").write_bytes(b"\n".join(lines))
    (d / "old.jsonl").write_bytes(b'{"schema": "maildrill.events", "version": 99}\n{"t_s": 1, "source": "a", '
                                  b'"kind": "x"}\n')


@pytest.mark.parametrize("header", [True, False])
def test_records_accept_and_refuse_the_same_lines_as_events(tmp_path: Path, header: bool) -> None:
    write_damaged(tmp_path, header=header)
    store = EventStore(tmp_path)
    p_events: list = []
    p_records: list = []
    want = [e.to_dict() for e in store.stream(p_events)]
    got = [{**r, "corr": r.get("corr")} for r in store.records(p_records)]
    assert [json.dumps(r, sort_keys=True) for r in got] == [json.dumps(r, sort_keys=True) for r in want]
    assert all(type(r["t_s"]) is float for r in got)
    assert p_records == p_events
    k = 1 if header else 0  # the header line shifts the line numbers by one
    assert [(e["t_s"], e["kind"]) for e in want][2:] == [(2.5, "mta.reply.sent"), (4.0, "mta.message.accepted"),
                                                      (5.0, "x"), (7.0, "y"), (7.5, "y"), (8.0, "y"), (8.5, "y")]
    huge = [(r["n"], r.get("m")) for r in got if r["kind"] == "y"]
    assert huge == [(-9223372036854775809, -9223372036854775808), (18446744073709551616, 18446744073709551615),
                    (1e19, -1.5e300), ([1, 123456789012345678901234], None)]
    assert [type(n) for n, _ in huge] == [int, int, float, list]
    assert [str(p) for p in p_records] == ([] if header else ["mta-a.jsonl:1: no maildrill.events header line; "
                                                              "read anyway"]) + [
        f"mta-a.jsonl:{4 + k}: not an event (t_s must be a number, got True); skipped",
        f"mta-a.jsonl:{5 + k}: not an event (source and kind must be strings); skipped",
        f"mta-a.jsonl:{6 + k}: not an event (corr must be a string or null, got 5); skipped",
        f"mta-a.jsonl:{7 + k}: not an event ('t_s'); skipped",
        f"mta-a.jsonl:{8 + k}: not an event object; skipped",
        f"mta-a.jsonl:{9 + k}: not JSON; skipped",
        f"mta-a.jsonl:{17 + k}: not JSON; skipped",
        f"mta-a.jsonl:{18 + k}: truncated last line (its writer stopped mid-write); skipped",
        "old.jsonl:1: event schema version 99, this maildrill reads version 1; whole file skipped"]


def test_a_webhook_drill_read_twice_gives_the_same_whole_analysis(tmp_path: Path) -> None:
    """Webhook lag reads the acceptances again at the end (they are not held through the pass): same result,
    acceptances by a source not named mta/<name> included, whatever file each event is in."""
    from maildrill.harness.events import Event

    from tests.unit.test_webhooks_config_and_metrics import _silence_log

    evs = [*_silence_log(),
           Event(6.0, "relay", "mta.message.accepted", "c5", {"message_id": "r-c5", "rcpt": "c5"}),
           Event(7.0, "load/0", "load.request.completed", "c1", {"class": "otp", "ok": True, "latency_ms": 3.0}),
           Event(7.5, "load/0", "load.request.completed", "c9", {"class": "otp", "ok": True, "latency_ms": 4.0})]
    scenario = {"vendors": [{"name": "sg"}, {"name": "ses"}, {"name": "quiet"}]}
    want = analyze(evs, scenario)
    assert want.metrics["webhooks_sent"] and want.by_mta["relay"]["duplicates_failover_after_silence"] == 1
    for seed in range(3):
        d = tmp_path / f"run{seed}"
        (d / "events").mkdir(parents=True)
        (d / "scenario.json").write_text(json.dumps(scenario))
        rnd = random.Random(seed)
        writers = [EventWriter(d / "events" / f"w{i}.jsonl", f"w{i}") for i in range(3)]
        for e in rnd.sample(evs, len(evs)):
            rnd.choice(writers).write(e)
        for w in writers:
            w.close()
        _, got, _ = analyse_run(d)
        same_analysis(got, want)
