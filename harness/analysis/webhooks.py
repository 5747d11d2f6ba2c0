"""Webhook metrics: pure functions over the fake vendors' ``mta.webhook.*`` events (and their acceptances).

A webhook *event* is one (vendor, ``webhook`` number): its duplicate copy and its retries belong to it. Lag is
per accepted message and recipient: acceptance (``mta.message.accepted``) → the first 2xx-answered webhook for
it, in scenario seconds (event seconds / ``time_scale``).

From the SUT's side: a *failover during webhook silence* is an acceptance of a message (correlation id) by one
receiver after another receiver had already accepted it and before any webhook about it from that earlier receiver
was answered with a 2xx; a *late webhook acted on* is a ``sut.webhook.applied`` event with ``late`` true (the SUT
records its decisions; the reference mailer does). The latter is null when the SUT recorded no decisions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maildrill.harness.analysis.stats import percentile
from maildrill.harness.events import Event

WEBHOOK_METRIC_NAMES = ("webhook_lag_p50_s", "webhook_lag_p99_s", "webhooks_sent", "webhooks_lost",
                        "webhook_retries", "webhook_duplicates_delivered", "duplicates_failover_after_silence",
                        "late_webhooks_acted_on")


@dataclass
class WebhookTally:
    """Fed one event at a time (the analysis' single pass); `metrics()` gives the results."""

    accepted: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (source, message_id, rcpt) -> t
    first_ok: dict[tuple[str, str, str], float] = field(default_factory=dict)
    events: set[tuple[str, Any]] = field(default_factory=set)  # (source, webhook)
    ok_events: set[tuple[str, Any]] = field(default_factory=set)
    ok_copies: dict[tuple[str, Any], set[Any]] = field(default_factory=dict)
    retries: int = 0
    seen: bool = False
    # per correlation id: every acceptance (t, receiver), and the first 2xx-answered webhook per receiver
    corr_accepted: dict[str, set[tuple[float, str]]] = field(default_factory=dict)
    corr_first_ok: dict[tuple[str, str], float] = field(default_factory=dict)  # (corr, source) -> t
    late_applied: int = 0
    sut_seen: bool = False
    # True: `corr_accepted` is not gathered here but set by the caller before `metrics()` (the join rebuilds it
    # from its messages' acceptances rather than hold every acceptance twice)
    derived_corr_accepted: bool = False
    # True: `accepted` is not gathered by `add` but by `add_accepted`, which the caller feeds the acceptances again
    # once it knows that webhooks were sent
    deferred_accepted: bool = False

    def add(self, kind: str, source: str, t: float, d: Mapping[str, Any], corr: str | None = None) -> None:
        """`t` in scenario seconds; `corr` the event's correlation id."""
        if kind == "mta.message.accepted":
            if not self.deferred_accepted:
                self.add_accepted(source, t, d)
            if corr is not None and not self.derived_corr_accepted:
                self.corr_accepted.setdefault(corr, set()).add((t, source))
            return
        if kind in ("sut.webhook.applied", "sut.webhook.ignored"):
            self.sut_seen = True
            if kind == "sut.webhook.applied" and d.get("late") is True:
                self.late_applied += 1
            return
        if not kind.startswith("mta.webhook.") or d.get("webhook") is None:
            return  # SNS's SubscriptionConfirmation carries no webhook number: not a delivery event
        self.seen = True
        key = (source, d["webhook"])
        self.events.add(key)
        if kind == "mta.webhook.sent" and (d.get("attempt") or 1) > 1:
            self.retries += 1
        elif kind == "mta.webhook.answered" and 200 <= (d.get("status") or 0) < 300:
            self.ok_events.add(key)
            self.ok_copies.setdefault(key, set()).add(d.get("copy"))
            msg = (source, str(d.get("message_id")), str(d.get("rcpt")))
            if msg not in self.first_ok or t < self.first_ok[msg]:
                self.first_ok[msg] = t
            if corr is not None and t < self.corr_first_ok.get((corr, source), math.inf):
                self.corr_first_ok[(corr, source)] = t

    def add_accepted(self, source: str, t: float, d: Mapping[str, Any]) -> None:
        """An mta.message.accepted, for the webhook lag (the first one read per message id and recipient)."""
        if d.get("message_id") is not None:
            self.accepted.setdefault((source, str(d["message_id"]), str(d.get("rcpt"))), t)

    def metrics(self) -> dict[str, float | int | None]:
        if not self.seen:
            return {}
        lags = sorted(t - self.accepted[m] for m, t in self.first_ok.items() if m in self.accepted)
        return {
            "webhook_lag_p50_s": percentile(lags, 50) if lags else None,
            "webhook_lag_p99_s": percentile(lags, 99) if lags else None,
            "webhooks_sent": len(self.events),
            "webhooks_lost": len(self.events - self.ok_events),
            "webhook_retries": self.retries,
            "webhook_duplicates_delivered": sum(len(c) - 1 for c in self.ok_copies.values()),
            "duplicates_failover_after_silence": len(self.failed_over_in_silence()),
            "late_webhooks_acted_on": self.late_applied if self.sut_seen else None,
        }

    def failed_over_in_silence(self) -> list[str]:
        """The correlation ids some receiver accepted after another had accepted them earlier and before a webhook
        about them from that earlier receiver was answered with a 2xx (sorted)."""
        return sorted({corr for corr, _ in self._silent_failovers()})

    def failed_over_in_silence_by_receiver(self) -> dict[str, int]:
        """Per receiver (event source): how many correlation ids it accepted as such a failover."""
        out: dict[str, int] = {}
        for _, receiver in self._silent_failovers():
            out[receiver] = out.get(receiver, 0) + 1
        return dict(sorted(out.items()))

    def _silent_failovers(self) -> set[tuple[str, str]]:
        """(corr, the receiver that accepted it during the earlier receiver's webhook silence)."""
        return {(corr, q) for corr, accs in self.corr_accepted.items() for t_b, q in accs
                if any(t_a < t_b and p != q and self.corr_first_ok.get((corr, p), math.inf) > t_b
                       for t_a, p in accs)}


def webhook_metrics(events: Iterable[Event], *, time_scale: float = 1.0, t0: float = 0.0) -> dict[str, Any]:
    """The webhook metrics of an event list (empty when no vendor sent webhooks)."""
    tally = WebhookTally()
    for e in events:
        tally.add(e.kind, e.source, (e.t_s - t0) / time_scale, e.data, e.corr)
    return tally.metrics()
