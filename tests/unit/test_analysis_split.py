"""The pass in two processes (`analysis.split`): a real second Python process reads the second half of the event
bytes while this one reads the first, and the join is exactly the one-process join — at every cut, for random
drills, for stories that cross the cut (one transaction's replies on both sides, an acceptance and its lost ack,
one transaction storing two ids, webhooks on both sides), and for damaged files, whose problems are listed with
the same line numbers. When the second process cannot be trusted (it fails, or the cut file's header was not
accepted before the cut) this process reads the rest itself."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maildrill.harness.analysis import split
from maildrill.harness.analysis.join import Join, Origin, join_records
from maildrill.harness.analysis.synthetic import Model, random_model
from maildrill.harness.events import Event
from maildrill.harness.report.run import analyse_run
from maildrill.harness.store import EventStore, EventWriter, ReadProblem

from tests.unit.test_analysis_groundtruth import models
from tests.unit.test_analysis_records import same_analysis, write_damaged, write_run


def serial(d: Path, origin: Origin) -> tuple[Join, list[ReadProblem]]:
    store = EventStore(d)
    problems: list[ReadProblem] = []
    return join_records(store.records(problems), origin, again=lambda: store.records([])), problems


def two_processes(d: Path, origin: Origin, at: int) -> tuple[Join, list[ReadProblem], dict[str, Any]]:
    store = EventStore(d)
    problems: list[ReadProblem] = []
    how: dict[str, Any] = {}
    halves = split.cut(store.files(), min_bytes=0, at=at)
    j = split.join_files(store.files(), origin, problems, again=lambda: store.records([]), halves=halves, how=how)
    return j, problems, how


def line_starts(path: Path) -> list[int]:
    data = path.read_bytes()
    return [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A and i + 1 < len(data)]


def tricky_events() -> list[Event]:
    """Stories whose events any cut can separate."""
    e = Event
    return [
        e(0.5, "run", "run.action.fired", None, {"action": 0, "target": "mx", "what": "go_dark"}),
        e(1.0, "load/0", "load.request.completed", "a", {"class": "otp", "ok": True, "latency_ms": 5.0}),
        e(1.1, "load/0", "load.request.completed", "b", {"class": "otp", "ok": False, "latency_ms": 9.0}),
        e(1.2, "mta/mx", "mta.connection.opened", None, {"conn": 1}),
        e(1.3, "mta/mx", "mta.reply.sent", None, {"conn": 1, "txn": 0, "code": 421}),
        e(1.4, "mta/mx", "mta.reply.sent", "a", {"conn": 1, "txn": 1, "code": 250}),
        e(1.5, "mta/mx", "mta.reply.sent", "b", {"conn": 1, "txn": 1, "code": 451}),
        e(1.6, "mta/mx", "mta.reply.sent", "b", {"conn": 1, "txn": 1, "code": 250}),
        e(1.7, "mta/mx", "mta.message.accepted", "a", {"conn": 1, "txn": 1, "ack": "sent"}),
        e(1.7, "mta/mx", "mta.message.accepted", "b", {"conn": 1, "txn": 1, "ack": "sent"}),
        e(1.8, "mta/mx", "mta.message.ack_lost", None, {"conn": 1, "txn": 1}),
        e(1.9, "mta/mx", "mta.message.ack_lost", "b", {"conn": 1, "txn": 1}),
        e(2.0, "sut", "sut.queue.depth_sampled", None, {"depth": 3}),
        e(2.1, "load/0", "load.request.completed", "b", {"class": "reset", "ok": True, "latency_ms": 4.0,
                                                         "resend": 1}),
        e(2.2, "mta/sg", "mta.request.received", "c", {"conn": 7, "txn": 1}),
        e(2.3, "mta/sg", "mta.message.accepted", "c", {"conn": 8, "txn": 1, "message_id": "m-c", "rcpt": "c"}),
        e(2.4, "mta/sg", "mta.reply.sent", "c", {"conn": 8, "txn": 1, "code": 250}),
        e(2.5, "mta/sg", "mta.webhook.sent", "c", {"webhook": 1, "attempt": 1, "message_id": "m-c", "rcpt": "c"}),
        e(2.6, "mta/sg", "mta.webhook.answered", "c", {"webhook": 1, "status": 200, "copy": 0,
                                                       "message_id": "m-c", "rcpt": "c"}),
        e(2.7, "mta/mx", "mta.reply.sent", "a", {"conn": 2, "txn": 1, "code": 550}),
        e(2.8, "mta/mx", "mta.message.discarded", "a", {"conn": 3, "txn": 1}),
        e(2.9, "odd", "mta.message.accepted", "a", {"conn": 4, "txn": 1, "ack": "sent"}),
        e(3.0, "mta/mx", "mta.message.accepted", "a", {"conn": 5, "txn": 2, "ack": "sent"}),
        e(3.1, "sut", "sut.webhook.applied", "c", {"late": True}),
        e(3.2, "mta/ses", "mta.message.accepted", "c", {"conn": 1, "txn": 1, "message_id": "s-c", "rcpt": "c"}),
        e(3.3, "mta/sg", "mta.webhook.sent", "c", {"webhook": 2, "attempt": 2, "message_id": "m-c", "rcpt": "c"}),
        e(3.4, "run", "run.action.undone", None, {"action": 0}),
        e(3.5, "load/0", "load.request.completed", "d", {"class": "otp", "ok": True, "latency_ms": 1.0}),
    ]


def write_one_file(d: Path, evs: list[Event]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    w = EventWriter(d / "all.jsonl", "all")
    for e in evs:
        w.write(e)
    w.close()
    return d / "all.jsonl"


def test_every_cut_of_stories_that_cross_it_gives_the_one_process_join(tmp_path: Path) -> None:
    path = write_one_file(tmp_path, tricky_events())
    origin = Origin(0.5, 0.25)
    want, want_problems = serial(tmp_path, origin)
    assert want.messages["b"].acceptances[-1].ack == "lost" and want.webhook_metrics["webhooks_sent"] == 2
    starts = line_starts(path)[1:]  # a cut at 0 leaves the prefix empty: one process
    assert len(starts) == len(tricky_events())
    for _i, at in enumerate(starts):
        got, problems, how = two_processes(tmp_path, origin, at)
        assert how == {"processes": 2}, at
        assert got == want, at
        assert problems == want_problems == []


@pytest.mark.parametrize("header", [True, False])
def test_damaged_lines_are_listed_alike_at_every_cut(tmp_path: Path, header: bool) -> None:
    write_damaged(tmp_path, header=header)
    (tmp_path / "z.jsonl").write_bytes(b'{"t_s": 9, "source": "mta/b", "kind": "mta.reply.sent", "corr": "q", '
                                       b'"conn": 1, "txn": 1, "code": 250}\nnot json\n')
    want, want_problems = serial(tmp_path, Origin())
    assert len(want_problems) == (11 if header else 12) and str(want_problems[-1]) == "z.jsonl:2: not JSON; skipped"
    size_a = (tmp_path / "mta-a.jsonl").stat().st_size
    cuts = [*line_starts(tmp_path / "mta-a.jsonl")[1:], size_a, size_a + 10, size_a + 60]
    for _i, at in enumerate(cuts):
        got, problems, how = two_processes(tmp_path, Origin(), at)
        assert how["processes"] == 2 or how["why"].endswith(": its header was not accepted before the cut"), at
        assert (got, problems) == (want, want_problems), at


def test_a_cut_inside_a_file_of_another_schema_version_reads_it_as_skipped(tmp_path: Path) -> None:
    lines = [b'{"schema": "maildrill.events", "version": 99}'] + [
        json.dumps({"t_s": i, "source": "mta/a", "kind": "mta.reply.sent", "corr": f"u{i}", "conn": 1, "txn": i,
                    "code": 250}).encode() for i in range(1, 20)]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    write_one_file(tmp_path / "b", tricky_events()).rename(tmp_path / "b.jsonl")
    want, want_problems = serial(tmp_path, Origin())
    assert [str(p) for p in want_problems] == [
        "a.jsonl:1: event schema version 99, this maildrill reads version 1; whole file skipped"]
    got, problems, how = two_processes(tmp_path, Origin(), line_starts(tmp_path / "a.jsonl")[5])
    assert how == {"processes": 1, "why": "a.jsonl: its header was not accepted before the cut"}
    assert (got, problems) == (want, want_problems)


def test_a_second_process_that_fails_is_read_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_one_file(tmp_path, tricky_events())
    want, _ = serial(tmp_path, Origin())
    first_frame = ("import io, sys; from maildrill.harness.analysis.split import run_part; b = io.BytesIO(); "
                   "run_part(sys.argv[1], b); d = b.getvalue(); n = 8 + int.from_bytes(d[:8], 'little'); "
                   "sys.stdout.buffer.write(d[:n]); sys.exit({})")
    for child in ("import sys; sys.exit(3)",  # a crash before any frame
                  "import sys; sys.stdout.buffer.write(b'\\x10\\0\\0\\0\\0\\0\\0\\0abc'); sys.exit(0)",  # cut short
                  first_frame.format(1),  # its first frame, then a crash: nothing of it is folded
                  first_frame.format(0)):  # its first frame (folded here), then nothing: all is read again here
        monkeypatch.setattr(split, "_CHILD", child)
        got, problems, how = two_processes(tmp_path, Origin(), line_starts(path)[7])
        assert how == {"processes": 1, "why": "the second process failed"}
        assert (got, problems) == (want, [])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models(), st.integers(min_value=1, max_value=3), st.randoms(use_true_random=False), st.floats(0.05, 0.95))
def test_random_drills_cut_anywhere_give_the_one_process_join(
        tmp_path_factory: pytest.TempPathFactory, model: Model, files: int, rnd: random.Random, where: float) -> None:
    d = Path(tmp_path_factory.mktemp("run"))
    write_run(d, model, files, rnd)
    origin = Origin(model.time_scale, model.t0_s)
    want, _ = serial(d / "events", origin)
    total = sum(p.stat().st_size for p in EventStore(d / "events").files())
    got, problems, _how = two_processes(d / "events", origin, int(total * where))
    assert got == want and problems == []


def test_a_big_run_is_analysed_by_two_processes_with_the_same_whole_analysis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`maildrill report`'s path: above `SPLIT_MIN_BYTES` (lowered here) on a machine with 2 cores."""
    model = random_model(2000, seed=11, duration_s=200.0)
    write_run(tmp_path, model, 3, random.Random(5))
    _, one, _ = analyse_run(tmp_path)  # ~1 MB: one process at the default threshold
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(split, "processes", lambda: 2)
    seen: list[dict[str, Any]] = []
    real = split.join_files

    def spy(*args: Any, **kw: Any) -> Join:
        seen.append(kw.setdefault("how", {}))
        return real(*args, **kw)

    monkeypatch.setattr("maildrill.harness.analysis.core.join_files", spy)
    _, two, _ = analyse_run(tmp_path)
    assert seen == [{"processes": 2}]
    same_analysis(two, one)


def test_the_split_is_off_below_the_threshold_or_when_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_one_file(tmp_path, tricky_events())
    files = EventStore(tmp_path).files()
    assert split.cut(files) is None  # a few kB: one process
    assert split.cut(files, min_bytes=0) is not None
    monkeypatch.setenv(split.ENV, "1")
    assert split.processes() == 1
    how: dict[str, Any] = {}
    split.join_files(files, Origin(), [], how=how)
    assert how == {"processes": 1}
