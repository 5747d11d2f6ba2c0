"""The metrics scoped to one MTA (failover accounting: when traffic reached and left it, what it delivered)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from maildrill.harness.analysis.columns import Columns
from maildrill.harness.analysis.join import Attempts
from maildrill.harness.analysis.model import Value
from maildrill.harness.analysis.retries import story


def mta_metrics(name: str, attempts: Attempts, c: Columns, discarded: Mapping[str, int]) -> dict[str, Value]:
    outcomes = attempts.outcomes()
    names, numbers = attempts.mta_numbers()
    k_att = names.index(name) if name in names else -1
    mine = [o for mta, o in zip(numbers, outcomes, strict=True) if mta == k_att]
    k = c.mtas.index(name) if name in c.mtas else -2  # -2: no acceptance by it (-1 is "none")
    first, again = c.first_mta == k, c.again_mta == k
    times = np.concatenate((c.first_acc[first], c.again_t[again]))
    # its messages: those it accepted first, and those it accepted again after another MTA had
    later = c.again_msg[again]
    return {
        "first_delivery_s": float(times.min()) if times.size else None,
        "last_delivery_s": float(times.max()) if times.size else None,
        "delivered": int(np.count_nonzero(first)) + int(np.unique(later[~first[later]]).size),
        "acknowledged_but_lost": discarded.get(name, 0),
        "attempts_total": len(mine),
        "deferred_ratio": mine.count("4xx") / len(mine) if mine else None,
        "permanent_failures_retried": story(c).after_5xx_by_mta[name],
        "duplicates": int(np.count_nonzero(again)),
    }


def by_mta(names: Sequence[str], attempts: Attempts, c: Columns, discarded: Mapping[str, int],
           silent_failovers: Mapping[str, int] | None = None) -> dict[str, dict[str, Value]]:
    """`silent_failovers`: per MTA, the messages it accepted as a failover during webhook silence (present only
    when a vendor sent webhooks: then every MTA gets the metric, 0 for one that took none)."""
    out = {name: mta_metrics(name, attempts, c, discarded) for name in names}
    if silent_failovers is not None:
        for name, row in out.items():
            row["duplicates_failover_after_silence"] = silent_failovers.get(name, 0)
    return out
