"""Duplicates: accepted deliveries beyond the first per message, and what caused each — a lost 250, a failover
to another MTA, or a user resend the SUT did not coalesce."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from maildrill.harness.analysis.join import Message
from maildrill.harness.analysis.model import Value


@dataclass(frozen=True, slots=True)
class Duplicates:
    duplicates: int = 0
    messages: int = 0  # messages accepted more than once
    after_lost_ack: int = 0
    failover: int = 0
    user_resend: int = 0

    def metrics(self) -> dict[str, Value]:
        return {"duplicates": self.duplicates, "duplicate_messages": self.messages,
                "duplicates_after_lost_ack": self.after_lost_ack, "duplicates_failover": self.failover,
                "duplicates_user_resend": self.user_resend}

    def __add__(self, other: Duplicates) -> Duplicates:
        return Duplicates(self.duplicates + other.duplicates, self.messages + other.messages,
                          self.after_lost_ack + other.after_lost_ack, self.failover + other.failover,
                          self.user_resend + other.user_resend)


def of_message(m: Message) -> Duplicates:
    """Each acceptance after the first is a duplicate, attributed to the first cause that explains it."""
    acc = m.acceptances
    if len(acc) < 2:
        return Duplicates()
    lost = failover = resend = 0
    for i in range(1, len(acc)):
        t, mta = acc[i].t, acc[i].mta
        if any(a.ack == "lost" for a in acc[:i]):
            lost += 1
        elif mta != acc[0].mta:
            failover += 1
        elif any(r < t for r in m.resends):
            resend += 1
    return Duplicates(len(acc) - 1, 1, lost, failover, resend)


def duplicates(msgs: Iterable[Message]) -> Duplicates:
    total = Duplicates()
    for m in msgs:
        if len(m.acceptances) > 1:
            total += of_message(m)
    return total


def describe(m: Message) -> str:
    """accepted 2 times: by primary at 3.20 s (250 lost), by backup at 8.41 s"""
    text = ", ".join(f"by {a.mta} at {a.t:.2f} s" + (" (250 lost)" if a.ack == "lost" else "") for a in m.acceptances)
    return f"accepted {len(m.acceptances)} times: {text}"
