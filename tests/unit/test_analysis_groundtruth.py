"""Ground truth: event logs generated from a known model; every metric equals what the model implies."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maildrill.harness.analysis import analyze
from maildrill.harness.analysis.synthetic import OUTCOMES, Attempt, Message, Model, events, expected
from maildrill.harness.store import EventStore, EventWriter

gaps = st.floats(min_value=0.01, max_value=30, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def messages(draw: st.DrawFn, i: int) -> Message:
    t = round(draw(st.floats(min_value=0, max_value=100, allow_nan=False)), 3)
    resends = draw(st.lists(gaps, max_size=2))
    requests = [t]
    for g in resends:
        requests.append(round(requests[-1] + g, 3))
    attempts = []
    at = t + draw(gaps)
    for outcome, mta in draw(st.lists(st.tuples(st.sampled_from(OUTCOMES), st.sampled_from(["primary", "backup"])),
                                      max_size=5)):
        attempts.append(Attempt(round(at, 3), mta, outcome))
        at += draw(gaps)
    return Message(f"u{i:06d}", draw(st.sampled_from(["otp", "reset"])), tuple(requests), tuple(attempts),
                   ok=draw(st.booleans()) or draw(st.booleans()))


@st.composite
def models(draw: st.DrawFn) -> Model:
    n = draw(st.integers(min_value=0, max_value=25))
    msgs = tuple(draw(messages(i)) for i in range(n))
    ttl = draw(st.sampled_from([{}, {"otp": 10.0, "reset": 60.0}, {"otp": 0.5}]))
    return Model(msgs, ttl, draw(st.sampled_from([1.0, 0.1, 0.5, 2.0])), t0_s=3.0, duration_s=120.0)


def assert_matches(model: Model, got: dict, cls: str | None = None) -> None:
    want = expected(model, cls)
    for name, value in want.items():
        if name == "otp_expired" and cls is not None and cls not in model.ttl_s:
            value = None
        if isinstance(value, float):
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
        else:
            assert got[name] == value, name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(), st.randoms(use_true_random=False))
def test_every_metric_equals_the_model_and_ignores_event_order(model: Model, rnd: random.Random) -> None:
    evs = events(model)
    analysis = analyze(evs, model.scenario())
    assert_matches(model, dict(analysis.metrics))
    for cls in {m.cls for m in model.messages}:
        assert_matches(model, dict(analysis.by_class[cls]), cls)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    again = analyze(shuffled, model.scenario())
    assert again.metrics == analysis.metrics
    assert again.by_class == analysis.by_class and again.by_mta == analysis.by_mta
    assert again.offenders == analysis.offenders


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models(), st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
def test_events_split_over_files_read_back_to_the_same_metrics(tmp_path_factory: pytest.TempPathFactory,
                                                               model: Model, files: int, rnd: random.Random) -> None:
    evs = events(model)
    d = Path(tmp_path_factory.mktemp("ev"))
    writers = [EventWriter(d / f"w{i}.jsonl", f"w{i}") for i in range(files)]
    for e in evs:
        rnd.choice(writers).write(e)
    for w in writers:
        w.close()
    read = EventStore(d).read()
    assert read.problems == []
    assert analyze(read.events, model.scenario()).metrics == analyze(evs, model.scenario()).metrics
