"""The Hypothesis state machine hunts for the fault schedule that breaks a sender: it finds the planted bug in
the naive sender of examples/ci and shrinks it to a short schedule; the hardened sender survives."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from maildrill.examples.ci.sender import send_hardened, send_naive
from maildrill.harness.scenario import parse_scenario_text

from maildrill.strategies import SenderStateMachine, timelines, toxics

FAST = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, stateful_step_count=8)


class NaiveSender(SenderStateMachine):
    def send(self, host: str, port: int, rcpt: str) -> None:
        send_naive(host, port, rcpt)


class HardenedSender(SenderStateMachine):
    def send(self, host: str, port: int, rcpt: str) -> None:
        send_hardened(host, port, rcpt)


def test_the_machine_finds_the_naive_senders_bug_and_shrinks_it() -> None:
    with pytest.raises(AssertionError) as info:
        run_state_machine_as_test(NaiveSender, settings=settings(max_examples=200, **FAST))
    text = str(info.value)
    assert text.startswith(("retried after a permanent (5xx) reply", "sent again after its 250 was seen"))
    steps = int(re.search(r"the schedule \((\d+) steps\)", text).group(1))
    assert steps <= 3
    schedule = text.split("as a scenario (maildrill run):\n", 1)[1]
    doc = yaml.safe_load(schedule)
    full = {"version": 1, "name": "found-by-hypothesis", "duration_s": max(1, steps), **doc,
            "load": {"shape": {"kind": "constant", "rps": 1},
                     "classes": [{"name": "otp", "smtp": {"host": "127.0.0.1", "port": 2525}}]}}
    parse_scenario_text(yaml.safe_dump(full))  # maildrill run accepts it


def test_the_hardened_sender_survives_200_schedules() -> None:
    run_state_machine_as_test(HardenedSender, settings=settings(max_examples=200, **FAST))


@pytest.mark.parametrize("kind", ["mta", "toxic"])
def test_generated_schedules_are_valid_scenarios(kind: str) -> None:
    from hypothesis import given

    @given(timelines(max_steps=4), toxics())
    @settings(max_examples=50, deadline=None)
    def check(timeline, toxic):
        doc = {"version": 1, "name": "generated", "duration_s": 60,
               "mtas": [{"name": "primary"}], "proxies": [{"name": "primary", "upstream": "primary"}],
               "load": {"shape": {"kind": "constant", "rps": 1},
                        "classes": [{"name": "otp", "smtp": {"host": "127.0.0.1", "port": 2525}}]},
               "timeline": timeline if kind == "mta" else [{"at_s": 1, "proxy": "primary", "toxic": toxic}]}
        parse_scenario_text(yaml.safe_dump(doc))

    check()
