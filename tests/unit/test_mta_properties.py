"""Hypothesis state machines for the stateful behaviours, on a fake clock: greylist and token-bucket throttle."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from maildrill.fake_mta.behaviors import Context, Greylist, Throttle
from maildrill.fake_mta.clock import FakeClock
from maildrill.fake_mta.config import GreylistSpec, ThrottleSpec, Verb
from maildrill.fake_mta.presets import GENERIC

TRIPLETS = [("10.0.0.0/24", "a@x.test", "u1@y.test"), ("10.0.0.0/24", "a@x.test", "u2@y.test"),
            ("10.0.1.0/24", "b@x.test", "u1@y.test")]
times = st.floats(min_value=0, max_value=5000, allow_nan=False, allow_infinity=False)


@dataclass
class TripletModel:
    first: float | None = None  # first try of the current greylisting cycle
    last_pass: float | None = None


class GreylistMachine(RuleBasedStateMachine):
    """The model is the spec: an early retry is deferred and keeps first-seen; a retry inside
    [min_delay_s, retry_window_s] after the first try passes; a later one starts over; a passed
    triplet passes for whitelist_s after its last use."""

    @initialize(min_delay=st.floats(0, 1000), extra_window=st.floats(0, 2000), whitelist=st.floats(0, 3000))
    def setup(self, min_delay: float, extra_window: float, whitelist: float) -> None:
        spec = GreylistSpec(min_delay_s=min_delay, retry_window_s=max(min_delay + extra_window, 1e-3),
                            whitelist_s=whitelist)
        self.spec = spec
        self.greylist = Greylist(spec, GENERIC)
        self.clock = FakeClock()
        self.model = {t: TripletModel() for t in TRIPLETS}

    @rule(dt=times)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    def _expect(self, triplet: tuple[str, str, str]) -> bool:
        """What the spec says the attempt at the current time gets; advances the model."""
        now, m, spec = self.clock.now(), self.model[triplet], self.spec
        if m.last_pass is not None and now - m.last_pass <= spec.whitelist_s:
            m.last_pass = now
            return True
        if m.first is None or now - m.first > spec.retry_window_s:
            m.first = now  # a first try, or a retry too late: a new cycle
            return False
        if now - m.first < spec.min_delay_s:
            return False  # never accepted inside min_delay_s; first-seen is not reset
        m.first, m.last_pass = None, now  # always accepted inside [min_delay_s, retry_window_s]
        return True

    @rule(triplet=st.sampled_from(TRIPLETS))
    def attempt(self, triplet: tuple[str, str, str]) -> None:
        expected = self._expect(triplet)
        assert self.greylist.check(triplet, self.clock.now()) is expected

    @rule(triplet=st.sampled_from(TRIPLETS))
    def attempt_through_decide(self, triplet: tuple[str, str, str]) -> None:
        """As the server asks: a Decision (the postgrey 450) to defer, None (no opinion) to pass."""
        ip = triplet[0].split("/")[0].rsplit(".", 1)[0] + ".77"  # another address of the same /24
        ctx = Context(Verb.RCPT, self.clock.now(), ip, 1, triplet[1], triplet[2])
        expected = self._expect(triplet)
        decision = self.greylist.decide(ctx)
        assert (decision is None) is expected
        assert decision is None or (decision.reply is not None and decision.reply.code == 450)

    @invariant()
    def state_mirrors_model(self) -> None:
        firsts = {t: m.first for t, m in self.model.items() if m.first is not None}
        assert self.greylist.first_seen == firsts


class ThrottleMachine(RuleBasedStateMachine):
    """Never more than burst + rate_per_s * t accepted in any interval of length t; and a bucket left
    alone for burst / rate_per_s seconds accepts again."""

    @initialize(rate=st.floats(0.01, 500), burst=st.integers(1, 50))
    def setup(self, rate: float, burst: int) -> None:
        self.throttle = Throttle(ThrottleSpec(rate_per_s=rate, burst=burst), GENERIC)
        self.rate, self.burst = rate, burst
        self.clock = FakeClock()
        self.accepted: list[float] = []
        self.idle_since = 0.0

    def _take(self) -> bool:
        ctx = Context(Verb.MAIL, self.clock.now(), "127.0.0.1", 1, "a@x.test")
        return self.throttle.decide(ctx) is None

    @rule(dt=st.one_of(st.floats(0, 0.05), st.floats(0, 5), st.just(0.0)))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(n=st.integers(1, 30))
    def burst_of_takes(self, n: int) -> None:
        for _ in range(n):
            if self._take():
                now = self.clock.now()
                self.accepted.append(now)
                # every interval ending now: [t_i, now] holds len(accepted) - i accepts
                for i, t_i in enumerate(self.accepted):
                    count = len(self.accepted) - i
                    assert count <= self.burst + self.rate * (now - t_i) + 1e-6, (count, now - t_i)
        self.idle_since = self.clock.now()

    @precondition(lambda self: hasattr(self, "clock"))
    @rule()
    def refilled_bucket_accepts(self) -> None:
        self.clock.advance(self.burst / self.rate + 1e-6)
        assert self._take()
        self.accepted.append(self.clock.now())
        self.idle_since = self.clock.now()


TestGreylist = GreylistMachine.TestCase
TestGreylist.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestThrottle = ThrottleMachine.TestCase
TestThrottle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
