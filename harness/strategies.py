"""Hypothesis strategies for fault schedules, and a state machine that hunts for the schedule that breaks a sender.

    from maildrill.strategies import SenderStateMachine

    class MySender(SenderStateMachine):
        def send(self, host, port, rcpt):        # your code, sending one message
            send_with_retry(host, port, "app@example.test", rcpt, b"...")

    TestMySender = MySender.TestCase

Between steps the machine changes the fake MTA's behaviour (throttle, greylist, reject, tempfail, lose the 250,
drop mid-DATA, refuse connections, accept) and asks your sender to send a new message; after every step it checks
the rules from the incident reports on what the MTA recorded:
- a recipient that got a 5xx is never attempted again;
- a message is never sent again after the sender saw its 250;
- after a 421 the sender makes at most `max_attempts_after_421` more attempts for that message within
  `window_s`.
When a rule breaks, Hypothesis shrinks the schedule and the failure prints it as scenario YAML (`mtas:` and
`timeline:`) that `maildrill run` accepts.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from maildrill.harness.analysis.join import Attempt, join
from maildrill.harness.events import Event

# --- behaviours and toxics (bounded so every example runs in milliseconds) ----------------------------------
accept = st.just({"kind": "accept"})
greylist = st.builds(lambda d: {"kind": "greylist", "min_delay_s": d, "retry_window_s": 600},
                     st.sampled_from([0.0, 0.05, 0.2]))
throttle = st.builds(lambda r, b: {"kind": "throttle", "rate_per_s": r, "burst": b},
                     st.sampled_from([5.0, 20.0]), st.integers(1, 3))
reject = st.builds(lambda why: {"kind": "reject", "reason": why}, st.sampled_from(["unknown_user", "policy"]))
tempfail = st.builds(lambda code: {"kind": "tempfail", "code": code}, st.sampled_from([450, 451, 452]))
go_dark = st.builds(lambda mode: {"kind": "go_dark", "mode": mode},
                    st.sampled_from(["lose_ack", "drop_mid_data", "refuse"]))


def behaviors(*, dark: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """One fake-MTA behaviour (as in a fleet config / scenario), from the kinds real receivers show."""
    kinds = [accept, greylist, throttle, reject, tempfail] + ([go_dark] if dark else [])
    return st.one_of(*kinds)


def toxics() -> st.SearchStrategy[dict[str, Any]]:
    """One Toxiproxy toxic (type, stream, attributes) with bounded, fast attributes."""
    return st.one_of(
        st.builds(lambda ms, j: {"type": "latency", "attributes": {"latency": ms, "jitter": j}},
                  st.integers(0, 300), st.integers(0, 50)),
        st.builds(lambda r: {"type": "bandwidth", "attributes": {"rate": r}}, st.integers(1, 1000)),
        st.builds(lambda ms: {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": ms}},
                  st.integers(0, 100)),
        st.builds(lambda n: {"type": "limit_data", "attributes": {"bytes": n}}, st.integers(0, 2000)),
        st.builds(lambda ms: {"type": "timeout", "attributes": {"timeout": ms}}, st.integers(1, 300)),
    )


def timelines(*, max_steps: int = 5, mta: str = "primary", horizon_s: float = 60.0) -> st.SearchStrategy[Any]:
    """A scenario `timeline:` list of MTA behaviour changes, in time order, within `horizon_s`."""
    step = st.tuples(st.floats(0, horizon_s, allow_nan=False).map(lambda x: round(x, 1)), behaviors())
    return st.lists(step, max_size=max_steps).map(
        lambda steps: [{"at_s": t, "mta": mta, "set": [b]} for t, b in sorted(steps, key=lambda s: s[0])])


def schedule_yaml(steps: list[tuple[str, Any]], *, mta: str = "primary") -> str:
    """The steps a machine took, as the `mtas:`/`timeline:` part of a scenario (one second per step)."""
    import yaml

    first = next((b for kind, b in steps if kind == "set"), None)
    timeline = []
    sends = []
    for i, (kind, value) in enumerate(steps):
        if kind == "set" and value is not first:
            timeline.append({"at_s": float(i), "mta": mta, "set": [value]})
        elif kind == "send":
            sends.append(float(i))
    doc: dict[str, Any] = {"mtas": [{"name": mta, "behaviors": [first] if first else [{"kind": "accept"}]}]}
    if timeline:
        doc["timeline"] = timeline
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    return text + f"# the sender sent one message at each of t = {sends} s\n"


class SenderStateMachine(RuleBasedStateMachine):
    """Subclass, implement `send(host, port, rcpt)`, and use `MySender.TestCase` as a test."""

    max_attempts_after_421 = 3
    window_s = 60.0
    seed = 0

    def __init__(self) -> None:
        super().__init__()
        from maildrill.fake_mta.config import FleetSpec
        from maildrill.fake_mta.recording import MemoryRecorder
        from maildrill.fake_mta.testing import FleetThread

        self.recorder = MemoryRecorder("mta")
        self.fleet = FleetThread(FleetSpec.model_validate({"mtas": [{"name": "primary"}]}), recorder=self.recorder,
                                 seed=self.seed, control=False)
        self.fleet.__enter__()
        self.mta = self.fleet.fleet["primary"]
        self.steps: list[tuple[str, Any]] = []
        self.counter = itertools.count()

    def send(self, host: str, port: int, rcpt: str) -> None:
        raise NotImplementedError("implement send(host, port, rcpt): send one message with your code")

    @rule(behavior=behaviors())
    def change_behavior(self, behavior: dict[str, Any]) -> None:
        self.steps.append(("set", behavior))

        async def apply() -> None:
            self.mta.set_behaviors([behavior])

        self.fleet.run(apply())

    @rule()
    def send_a_message(self) -> None:
        corr = f"u{next(self.counter):06d}"
        self.steps.append(("send", corr))
        try:
            self.send(self.mta.host, self.mta.port, f"{corr}@users.drill.test")
        except Exception as exc:  # giving up is allowed; breaking the rules is not
            note(f"send({corr}) gave up: {type(exc).__name__}: {exc}")

    # --- the rules ---------------------------------------------------------------------------------------
    def _attempts(self) -> dict[str, tuple[Attempt, ...]]:
        """Each message's delivery attempts, from the analysis's join of the recorded events."""
        stories = join(Event.from_dict(e) for e in self.recorder.events).messages
        return {corr: m.attempts for corr, m in stories.items() if m.attempts}

    def _broken(self, rule: str, corr: str, attempts: tuple[Attempt, ...]) -> None:
        detail = "; ".join(f"t={a.start:.3f} codes={list(a.codes)}" + (f" ack={a.ack}" if a.ack else "")
                           for a in attempts)
        raise AssertionError(f"{rule}: {corr}: {detail}\nthe schedule ({len(self.steps)} steps), as a scenario "
                             f"(maildrill run):\n{schedule_yaml(self.steps)}")

    @invariant()
    def never_retries_a_5xx(self) -> None:
        for corr, attempts in self._attempts().items():
            if any(any(c >= 500 for c in a.codes) for a in attempts[:-1]):
                self._broken("retried after a permanent (5xx) reply", corr, attempts)

    @invariant()
    def never_resends_after_a_250_was_seen(self) -> None:
        for corr, attempts in self._attempts().items():
            if any(a.ack == "sent" for a in attempts[:-1]):
                self._broken("sent again after its 250 was seen", corr, attempts)

    @invariant()
    def backs_off_after_421(self) -> None:
        for corr, attempts in self._attempts().items():
            for i, a in enumerate(attempts):
                if 421 in a.codes:
                    later = [b for b in attempts[i + 1:] if b.start - a.start <= self.window_s]
                    if len(later) > self.max_attempts_after_421:
                        self._broken(f"more than {self.max_attempts_after_421} attempts within "
                                     f"{self.window_s:g} s after a 421", corr, attempts)

    def teardown(self) -> None:
        self.fleet.__exit__(None, None, None)
