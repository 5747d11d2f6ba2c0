"""The messages each rule flags, with what happened to them (for assertion messages and report tables)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from maildrill.harness.analysis import duplicates
from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.latency import expired, latency
from maildrill.harness.analysis.model import Offender
from maildrill.harness.analysis.retries import retried_after_5xx

MAX_OFFENDERS_PER_RULE = 500
SHOWN_ATTEMPTS = 12


def attempts_text(m: Message) -> str:
    parts = [f"{a.mta} {a.start:.2f} s {a.code if not a.accepted else 250}" for a in m.attempts[:SHOWN_ATTEMPTS]]
    more = f" (+{len(m.attempts) - SHOWN_ATTEMPTS} more)" if len(m.attempts) > SHOWN_ATTEMPTS else ""
    return "attempts: " + ", ".join(parts) + more if parts else "no delivery attempt reached an MTA"


def _flags(m: Message, ttl: Mapping[str, float]) -> Iterator[tuple[str, str]]:
    """(rule, detail) for each rule the message breaks, in the order the reports list them."""
    if len(m.acceptances) > 1:
        yield "duplicates", duplicates.describe(m)
    if retried_after_5xx(m) and m.first_5xx is not None:
        yield ("permanent_failures_retried",
               f"5xx from {m.first_5xx.mta} at {m.first_5xx.t:.2f} s, then attempted again; {attempts_text(m)}")
    if expired(m, ttl):
        when = f"delivered after {latency(m):.2f} s" if m.acceptances else "never delivered"
        yield "otp_expired", f"{when} (ttl {ttl[m.cls or '']:g} s); {attempts_text(m)}"
    if not m.acceptances:
        yield "undelivered", attempts_text(m)


def offenders(msgs: Iterable[Message], ttl: Mapping[str, float]) -> list[Offender]:
    """Every flagged message, at most MAX_OFFENDERS_PER_RULE per rule."""
    out: list[Offender] = []
    counts: Counter[str] = Counter()
    for m in msgs:
        for rule, detail in _flags(m, ttl):
            if counts[rule] < MAX_OFFENDERS_PER_RULE:
                counts[rule] += 1
                out.append(Offender(m.corr, m.cls, rule, detail))
    return out
