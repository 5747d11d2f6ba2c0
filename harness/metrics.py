# ruff: noqa: E501  (the metric registry reads best one metric per line)
"""The metric registry: every user-facing metric name, its unit, the scopes a threshold may narrow it to, which
direction is better, and its exact definition. Declared once, here, below every layer that names a metric: the
scenario checks threshold names and scopes against it, the analysis computes exactly these names (a test says
so), and `summary.json`, the reports, the verdict and `maildrill compare` read them.

A metric's *scopes* say where a threshold may narrow it: ``"run"`` (always), ``"class"`` (``latency_p99_s[otp]``)
and/or ``"mta"`` (``duplicates[backup]``; a fake email-API vendor is scoped by its name like an MTA). All times are in scenario
seconds (event seconds / ``time_scale``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Value = int | float | None
Better = Literal["lower", "higher"] | None


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str  # "count", "ratio", "s", "ms", "1/s", "index"
    scopes: frozenset[str]
    better: Better
    description: str  # one sentence, exact definition (shown in reports and the README)


def _m(name: str, unit: str, scopes: str, better: Better, description: str) -> MetricInfo:
    return MetricInfo(name, unit, frozenset(scopes.split(",")), better, description)


_ALL = [
    # volume
    _m("requests_total", "count", "run,class", None, "load requests completed (HTTP or SMTP submissions), resends included"),
    _m("messages_requested", "count", "run,class", None, "distinct correlation ids requested (one per user need)"),
    _m("delivered", "count", "run,class,mta", "higher",
       "distinct correlation ids accepted (mta.message.accepted) at least once by the end of the run"),
    _m("undelivered", "count", "run,class", "lower", "requested correlation ids never accepted by the end of the run"),
    _m("acknowledged_but_lost", "count", "run,class,mta", "lower",
       "250s sent for messages a blackholing MTA discarded (mta.message.discarded)"),
    # queue drain
    _m("outstanding_peak", "count", "run,class", "lower", "maximum over time of outstanding(t): messages the SUT had acknowledged by t (a 2xx, or delivered anyway) and neither delivered nor permanently rejected (5xx) by t"),
    _m("drain_s", "s", "run,class", "lower",
       "from the end of the last fault (or of the load, whichever is later) until outstanding reaches 0; "
       "null when it never does"),
    _m("queue_depth_peak", "count", "run", "lower", "maximum queue depth the SUT's own probe reported; null without a probe"),
    # retry storm
    _m("attempts_total", "count", "run,class,mta", "lower",
       "delivery attempts (SMTP transactions that reached MAIL FROM, or API requests to a vendor) seen by any MTA or vendor"),
    _m("retry_amplification", "ratio", "run,class", "lower", "attempts_total / messages_requested"),
    _m("deferred_ratio", "ratio", "run,mta", "lower", "delivery attempts that ended with a 4xx reply / all delivery attempts (what a deferred-queue alert watches)"),
    _m("attempts_per_s_peak", "1/s", "run", "lower", "highest attempts per second (1 s bins)"),
    _m("attempts_per_s_peak_after_fault", "1/s", "run", "lower",
       "highest attempts per second after the first fault window began (with no timeline: after the first 4xx); retry storms peak here"),
    _m("retry_interval_p50_s", "s", "run,class", None, "median time between consecutive attempts of the same message"),
    _m("retry_interval_p95_s", "s", "run,class", None, "95th percentile of the same"),
    _m("retry_interval_cv", "ratio", "run,class", "higher", "coefficient of variation (stdev/mean) of retry intervals"),
    _m("retry_sync_index", "index", "run,class", "lower",
       "0..1: how synchronised retries are: per retry ordinal (1st, 2nd, ... retry), the share of retries within "
       "±10 % of the most common interval (1 = lock-step, as fixed or unjittered backoff; under 0.2 = spread, as "
       "full jitter); null with fewer than 5 retries"),
    _m("permanent_failures_retried", "count", "run,class,mta", "lower",
       "messages attempted again after a 5xx for the same recipient"),
    # duplicates
    _m("duplicates", "count", "run,class,mta", "lower", "accepted deliveries beyond the first per message, across all MTAs"),
    _m("duplicate_messages", "count", "run,class", "lower", "messages accepted more than once"),
    _m("duplicates_after_lost_ack", "count", "run,class", "lower",
       "duplicates following an acceptance whose 250 was lost (ack: lost, or the client gone before the 250: mta.message.ack_lost)"),
    _m("duplicates_failover", "count", "run,class", "lower", "duplicates accepted by a different MTA than the first acceptance"),
    _m("duplicates_user_resend", "count", "run,class", "lower",
       "duplicates that followed a user resend the SUT did not coalesce"),
    # OTP expiry / delivery latency (request completed -> first acceptance)
    _m("latency_p50_s", "s", "run,class", "lower", "median delivery latency (first request completed -> first acceptance) over every message owed a delivery: one never accepted and not bounced with a 5xx counts as never, and a percentile that lands on it is null (shown as never)"),
    _m("latency_p95_s", "s", "run,class", "lower", "95th percentile delivery latency, as latency_p50_s"),
    _m("latency_p99_s", "s", "run,class", "lower", "99th percentile delivery latency, as latency_p50_s"),
    _m("latency_max_s", "s", "run,class", "lower", "slowest delivery; never (null) while any message owed one was not delivered"),
    _m("otp_expired", "count", "run,class", "lower", "messages delivered after their class's ttl_s, or never"),
    _m("otp_expired_ratio", "ratio", "run,class", "lower", "otp_expired / messages_requested"),
    # the app side
    _m("http_error_ratio", "ratio", "run,class", "lower", "load requests that failed (not ok) / all load requests"),
    _m("request_latency_p50_ms", "ms", "run,class", "lower", "median load request latency"),
    _m("request_latency_p99_ms", "ms", "run,class", "lower", "99th percentile load request latency"),
    _m("http_error_ratio_in_faults", "ratio", "run", "lower", "http_error_ratio of requests completed inside fault windows"),
    _m("request_latency_p99_ms_in_faults", "ms", "run", "lower", "request_latency_p99_ms inside fault windows"),
    # failover accounting
    _m("first_delivery_s", "s", "run,mta", None, "when the first message was accepted (per MTA: when traffic reached it)"),
    _m("last_delivery_s", "s", "run,mta", None, "when the last message was accepted (per MTA: when traffic left it)"),
    # delivery webhooks of the fake vendors (harness/analysis/webhooks.py); absent when no vendor sends webhooks
    _m("webhook_lag_p50_s", "s", "run", "lower", "median over accepted messages (per recipient) of acceptance -> the first webhook about it the SUT answered with a 2xx"),
    _m("webhook_lag_p99_s", "s", "run", "lower", "99th percentile of the same"),
    _m("webhooks_sent", "count", "run", None, "webhook events the vendors generated (a duplicate copy and retries belong to their event; events lost on purpose included)"),
    _m("webhooks_lost", "count", "run", "lower", "webhook events the SUT never answered with a 2xx (lost, retries exhausted, refused, dropped while paused, pending at the end)"),
    _m("webhook_retries", "count", "run", None, "webhook POSTs beyond each event's first attempt (the vendors' retry schedules at work)"),
    _m("webhook_duplicates_delivered", "count", "run", None, "webhook events the SUT answered with a 2xx more than once (a vendor's duplicate copy got through too)"),
    _m("duplicates_failover_after_silence", "count", "run,mta", "lower", "messages (correlation ids) a receiver accepted after another receiver had accepted them and before any webhook about them from that earlier receiver was answered with a 2xx: failover during webhook silence (per MTA: those it accepted so)"),
    _m("late_webhooks_acted_on", "count", "run", "lower", "webhooks the SUT acted on for a message another vendor owned by then (sut.webhook.applied with late: true, which the SUT records; the reference mailer does); null when the SUT recorded no webhook decisions"),
]
METRICS: Mapping[str, MetricInfo] = {m.name: m for m in _ALL}

# The headline metrics: summary.json's and the reports' first table, and the spread a repeat set shows.
HEADLINE = ("messages_requested", "delivered", "undelivered", "retry_amplification", "retry_sync_index",
            "attempts_per_s_peak", "deferred_ratio", "drain_s", "otp_expired", "otp_expired_ratio", "duplicates",
            "permanent_failures_retried", "http_error_ratio")
