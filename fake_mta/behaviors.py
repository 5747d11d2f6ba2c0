"""Behaviours: small objects that decide (or decline to decide) the reply at one point of the SMTP dialogue.

A server asks its behaviours in order at each verb; the first that decides wins, one with no opinion
falls through, and when none decides the server's default (accept) applies. Tarpits only add delay and
fall through. Behaviours keep their own state (greylist triplets, token buckets); `reset()` clears it.
Time comes from the `now` in the context (a Clock's reading), randomness from the server's seeded RNG.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from maildrill.fake_mta.config import (
    AcceptSpec,
    BehaviorSpec,
    GoDarkMode,
    GoDarkSpec,
    GreylistSpec,
    RejectSpec,
    TarpitSpec,
    TempfailSpec,
    ThrottleSpec,
    Verb,
    WebhookPauseSpec,
)
from maildrill.fake_mta.reply import GREYLIST_HARAKA, GREYLIST_POSTGREY, Reply

ALL_VERBS = frozenset(Verb)


class Action(StrEnum):
    REPLY = "reply"  # send `reply` (None: the server's default positive reply)
    DELAY = "delay"  # wait `delay_s`, then keep asking the next behaviours
    HANG = "hang"  # never reply (hang_banner, hang_data)
    DROP = "drop"  # close the connection without a reply (drop_mid_data)
    LOSE_ACK = "lose_ack"  # record the message accepted, close without the 250
    BLACKHOLE = "blackhole"  # reply 250, record the message discarded


@dataclass(frozen=True, slots=True)
class Decision:
    behavior: str
    action: Action = Action.REPLY
    reply: Reply | None = None
    delay_s: float = 0.0


@dataclass(slots=True)
class Context:
    """What a behaviour may look at. `rcpt` is the recipient being given at RCPT, else the first accepted."""

    verb: Verb
    now: float
    ip: str
    conn: int
    mail_from: str | None = None
    rcpt: str | None = None
    rcpts: Sequence[str] = ()
    api_key: str | None = None  # HTTP vendors: the request's API key


class Wording(Protocol):
    """A persona's reply texts and the verbs it uses (maildrill.fake_mta.presets.Persona)."""

    def reply_for(self, key: str) -> Reply | None: ...

    def verb_for(self, kind: str) -> Verb | None: ...


class Behavior:
    """Base: matching, probability and the verbs it fires at. Subclasses implement `decide`."""

    kind = "behavior"
    default_verbs: frozenset[Verb] = ALL_VERBS

    def __init__(self, spec: BehaviorSpec, wording: Wording) -> None:
        self.spec = spec
        self.label = spec.name or spec.kind
        self.probability = spec.probability
        self._rcpt_rx = re.compile(spec.match_rcpt) if spec.match_rcpt else None
        self._sender_rx = re.compile(spec.match_sender) if spec.match_sender else None
        persona_verb = wording.verb_for(self.kind)
        if spec.at is not None:
            self.verbs: frozenset[Verb] = frozenset({spec.at})
        elif persona_verb is not None:
            self.verbs = frozenset({persona_verb})
        else:
            self.verbs = self.default_verbs
        self.custom_reply = Reply.from_spec(spec.reply) if spec.reply else None

    def matches(self, ctx: Context) -> bool:
        if self._rcpt_rx is not None:
            rcpts = [ctx.rcpt] if ctx.verb is Verb.RCPT else ctx.rcpts
            if not any(r is not None and self._rcpt_rx.search(r) for r in rcpts):
                return False
        sender_rx = self._sender_rx
        return sender_rx is None or (ctx.mail_from is not None and sender_rx.search(ctx.mail_from) is not None)

    def fires(self, ctx: Context, rng: random.Random) -> bool:
        """Matches, and wins its (seeded) coin toss. Draws from `rng` only when probability < 1."""
        if not self.matches(ctx):
            return False
        return self.probability >= 1.0 or rng.random() < self.probability

    def decide(self, ctx: Context) -> Decision | None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state (greylist triplets, buckets)."""

    def _reply(self, wording: Wording, key: str, fallback: Reply) -> Reply:
        return self.custom_reply or wording.reply_for(key) or fallback


class Accept(Behavior):
    """Decides "yes" with the default positive reply (or its own): later behaviours are not asked."""

    kind = "accept"

    def __init__(self, spec: AcceptSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self._decision = Decision(self.label, Action.REPLY, self.custom_reply)

    def decide(self, ctx: Context) -> Decision | None:
        return self._decision


def client_net(ip: str) -> str:
    """The client's network as greylisting sees it: IPv4 /24 (as postgrey), IPv6 /64."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Greylist(Behavior):
    """Defers a triplet (client net, sender, recipient) until it retries after `min_delay_s` and within
    `retry_window_s` of its first try; then passes it (no opinion) and whitelists it for `whitelist_s`.
    An early retry is deferred again and does not reset the first-seen time (postgrey, Haraka)."""

    kind = "greylist"
    default_verbs = frozenset({Verb.RCPT})

    def __init__(self, spec: GreylistSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self.min_delay_s = spec.min_delay_s
        self.retry_window_s = spec.retry_window_s
        self.whitelist_s = spec.whitelist_s
        key = f"greylist.{spec.style}" if spec.style else "greylist"
        fallback = GREYLIST_HARAKA if spec.style == "haraka" else GREYLIST_POSTGREY
        self._decision = Decision(self.label, Action.REPLY, self._reply(wording, key, fallback))
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.passed: dict[tuple[str, str, str], float] = {}

    def triplet(self, ctx: Context) -> tuple[str, str, str]:
        return (client_net(ctx.ip), (ctx.mail_from or "").lower(), (ctx.rcpt or "").lower())

    def decide(self, ctx: Context) -> Decision | None:
        return None if self.check(self.triplet(ctx), ctx.now) else self._decision

    def check(self, triplet: tuple[str, str, str], now: float) -> bool:
        """True: the triplet passes now. Pure logic on the state, for property tests."""
        passed_at = self.passed.get(triplet)
        if passed_at is not None and now - passed_at <= self.whitelist_s:
            self.passed[triplet] = now  # auto-whitelist refreshed by use, as postgrey's max-age
            return True
        first = self.first_seen.get(triplet)
        if first is None or now - first > self.retry_window_s:
            self.first_seen[triplet] = now  # a first try, or a retry too late: starts over
            return False
        if now - first < self.min_delay_s:
            return False  # too early: deferred again, first-seen kept
        del self.first_seen[triplet]
        self.passed[triplet] = now
        return True

    def reset(self) -> None:
        self.first_seen.clear()
        self.passed.clear()


@dataclass(slots=True)
class TokenBucket:
    """`burst` tokens, refilled at `rate_per_s`; each take needs one whole token."""

    rate_per_s: float
    burst: int
    tokens: float = field(default=-1.0)
    last: float | None = None

    def take(self, now: float, *, charge_refused: bool = False) -> bool:
        """Take a token if there is one. `charge_refused`: a refused take still costs one (down to -burst)."""
        if self.last is None:
            self.tokens, self.last = float(self.burst), now
        elif now > self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate_per_s)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        if charge_refused:
            self.tokens = max(-float(self.burst), self.tokens - 1.0)
        return False


class Throttle(Behavior):
    """Token bucket per connection, per client IP or global. Over the rate it replies (default
    `421 4.4.5 Server busy, try again later.`, which closes the connection, RFC 5321 §3.8)."""

    kind = "throttle"
    default_verbs = frozenset({Verb.MAIL})

    def __init__(self, spec: ThrottleSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self.rate_per_s = spec.rate_per_s
        self.burst = spec.burst
        self.scope = spec.scope
        self.charge_refused = spec.count == "attempts"
        fallback = Reply(421, "4.4.5", ("Server busy, try again later.",))
        self._decision = Decision(self.label, Action.REPLY, self._reply(wording, "throttle", fallback))
        self.buckets: dict[object, TokenBucket] = {}

    def _key(self, ctx: Context) -> object:
        scope = self.scope
        if scope == "global":
            return None
        return ctx.conn if scope == "connection" else ctx.ip if scope == "ip" else ("key", ctx.api_key)

    def decide(self, ctx: Context) -> Decision | None:
        key = self._key(ctx)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate_per_s, self.burst)
        return None if bucket.take(ctx.now, charge_refused=self.charge_refused) else self._decision

    def forget_connection(self, conn: int) -> None:
        if self.scope == "connection":
            self.buckets.pop(conn, None)

    def reset(self) -> None:
        self.buckets.clear()


_REJECT_VERB = {"unknown_user": Verb.RCPT, "policy": Verb.RCPT, "blocked": Verb.CONNECT, "auth": Verb.AUTH}
_REJECT_FALLBACK = {
    "unknown_user": Reply(550, "5.1.1", (
        "<{rcpt}>: Recipient address rejected: User unknown in local recipient table",
    )),
    "policy": Reply(550, "5.7.1", ("Message rejected by policy",)),
    "blocked": Reply(554, "5.7.0", ("Service unavailable; client host [{ip}] blocked",)),
    "auth": Reply(535, "5.7.8", ("Authentication credentials invalid",)),
}


class Reject(Behavior):
    """A permanent refusal where that refusal happens: unknown user at RCPT, policy at RCPT,
    blocked at connect (a 554 greeting, RFC 5321 §3.1), bad credentials at AUTH."""

    kind = "reject"

    def __init__(self, spec: RejectSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        if spec.at is None:
            self.verbs = frozenset({_REJECT_VERB[spec.reason]})
        key = f"reject.{spec.reason}"
        self._decision = Decision(self.label, Action.REPLY, self._reply(wording, key, _REJECT_FALLBACK[spec.reason]))

    def decide(self, ctx: Context) -> Decision | None:
        return self._decision


# RFC 5321 §4.2.2/§4.2.3 texts
_TEMPFAIL_FALLBACK = {
    450: Reply(450, "4.2.0", ("Requested mail action not taken: mailbox unavailable",)),
    451: Reply(451, "4.3.0", ("Requested action aborted: local error in processing",)),
    452: Reply(452, "4.3.1", ("Requested action not taken: insufficient system storage",)),
}


class Tempfail(Behavior):
    kind = "tempfail"
    default_verbs = frozenset({Verb.RCPT})

    def __init__(self, spec: TempfailSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        fallback = _TEMPFAIL_FALLBACK[spec.code]
        self._decision = Decision(self.label, Action.REPLY, self._reply(wording, f"tempfail.{spec.code}", fallback))

    def decide(self, ctx: Context) -> Decision | None:
        return self._decision


_GO_DARK = {
    GoDarkMode.REFUSE: (Verb.CONNECT, Action.DROP),  # the server closes its listener; see FakeMTA
    GoDarkMode.HANG_BANNER: (Verb.CONNECT, Action.HANG),
    GoDarkMode.HANG_DATA: (Verb.DOT, Action.HANG),
    GoDarkMode.DROP_MID_DATA: (Verb.DATA, Action.DROP),
    GoDarkMode.LOSE_ACK: (Verb.DOT, Action.LOSE_ACK),
    GoDarkMode.BLACKHOLE: (Verb.DOT, Action.BLACKHOLE),
    # HTTP vendors' modes (an MTA's config refuses them; the vendor reads `mode` itself)
    GoDarkMode.HANG: (Verb.DOT, Action.HANG),
    GoDarkMode.RESET: (Verb.DATA, Action.DROP),
    GoDarkMode.LOSE_RESPONSE: (Verb.DOT, Action.LOSE_ACK),
}


class GoDark(Behavior):
    kind = "go_dark"

    def __init__(self, spec: GoDarkSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self.mode = spec.mode
        verb, action = _GO_DARK[spec.mode]
        self.verbs = frozenset({verb})
        self._decision = Decision(self.label, action, self.custom_reply)

    def decide(self, ctx: Context) -> Decision | None:
        return self._decision


class Tarpit(Behavior):
    """Waits `delay_s` before the reply (then the next behaviours decide). Every verb unless `at` says."""

    kind = "tarpit"

    def __init__(self, spec: TarpitSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self._decision = Decision(self.label, Action.DELAY, None, spec.delay_s)

    def decide(self, ctx: Context) -> Decision | None:
        return self._decision


class WebhookPause(Behavior):
    """Never decides a reply: an HTTP vendor's webhook dispatcher reads it (webhooks held or dropped)."""

    kind = "webhook_pause"
    default_verbs = frozenset({Verb.DOT})

    def __init__(self, spec: WebhookPauseSpec, wording: Wording) -> None:
        super().__init__(spec, wording)
        self.mode = spec.mode

    def decide(self, ctx: Context) -> Decision | None:
        return None


REGISTRY: dict[str, type[Behavior]] = {
    cls.kind: cls for cls in (Accept, Greylist, Throttle, Reject, Tempfail, GoDark, Tarpit, WebhookPause)
}


def build(specs: Sequence[BehaviorSpec], wording: Wording) -> list[Behavior]:
    return [REGISTRY[s.kind](s, wording) for s in specs]


def by_verb(behaviors: Sequence[Behavior]) -> dict[Verb, tuple[Behavior, ...]]:
    """Behaviours grouped per verb, in list order, so a verb nobody watches costs one dict lookup."""
    return {v: tuple(b for b in behaviors if v in b.verbs) for v in Verb}


def refuses(behaviors: Sequence[Behavior]) -> bool:
    return any(isinstance(b, GoDark) and b.mode is GoDarkMode.REFUSE for b in behaviors)


def evaluate(behaviors: tuple[Behavior, ...], ctx: Context, rng: random.Random) -> tuple[Decision | None, float]:
    """The first deciding behaviour's decision (or None) and the total tarpit delay before it."""
    delay = 0.0
    for b in behaviors:
        if not b.fires(ctx, rng):
            continue
        d = b.decide(ctx)
        if d is None:
            continue
        if d.action is Action.DELAY:
            delay += d.delay_s
            continue
        if isinstance(b, GoDark) and b.mode is GoDarkMode.REFUSE:
            continue  # refuse acts on the listener, not on a connection already accepted
        return d, delay
    return None, delay
