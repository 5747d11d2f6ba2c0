"""The metrics scoped to one MTA (failover accounting: when traffic reached and left it, what it delivered)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maildrill.harness.analysis.join import Attempts, Message
from maildrill.harness.analysis.model import Value
from maildrill.harness.analysis.retries import retried_after_5xx


def mta_metrics(name: str, attempts: Attempts, messages: Sequence[Message], discarded: Mapping[str, int],
                outcomes: Sequence[str] | None = None) -> dict[str, Value]:
    """`outcomes`: the attempts' `outcomes()`, when the caller has them."""
    outcomes = attempts.outcomes() if outcomes is None else outcomes
    mine = [o for mta, o in zip(attempts.mtas, outcomes, strict=True) if mta == name]
    times = [acc.t for m in messages for acc in m.acceptances if acc.mta == name]
    return {
        "first_delivery_s": min(times, default=None),
        "last_delivery_s": max(times, default=None),
        "delivered": sum(1 for m in messages if any(acc.mta == name for acc in m.acceptances)),
        "acknowledged_but_lost": discarded.get(name, 0),
        "attempts_total": len(mine),
        "deferred_ratio": mine.count("4xx") / len(mine) if mine else None,
        "permanent_failures_retried": sum(1 for m in messages if m.first_5xx is not None
                                          and m.first_5xx.mta == name and retried_after_5xx(m)),
        "duplicates": sum(1 for m in messages for acc in m.acceptances[1:] if acc.mta == name),
    }


def by_mta(names: Sequence[str], attempts: Attempts, messages: Sequence[Message],
           discarded: Mapping[str, int],
           silent_failovers: Mapping[str, int] | None = None) -> dict[str, dict[str, Value]]:
    """`silent_failovers`: per MTA, the messages it accepted as a failover during webhook silence (present only
    when a vendor sent webhooks: then every MTA gets the metric, 0 for one that took none)."""
    outcomes = attempts.outcomes()
    out = {name: mta_metrics(name, attempts, messages, discarded, outcomes) for name in names}
    if silent_failovers is not None:
        for name, row in out.items():
            row["duplicates_failover_after_silence"] = silent_failovers.get(name, 0)
    return out
