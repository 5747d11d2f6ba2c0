"""The names every part of maildrill shares, each declared once: event kinds with their fields, behaviour
kinds, toxic types. Writers and readers import them from here; tests hold docs/events.md, the scenario
model, the fake MTA's behaviour registry and the fault proxy to these declarations, and fail on a name that
is used but not declared. (Metric names are declared in `maildrill.harness.metrics`.)

This module sits below every other one: it imports nothing from maildrill, so `maildrill.fake_mta` (which
never imports `maildrill.harness`) and the harness can both use it.

To add an event kind: add a member below with its source and fields, write it with
``recorder.record(EventKind.X, corr, field=...)``, and describe it in docs/events.md (a test compares the
two).
"""

from __future__ import annotations

from enum import StrEnum

_WEBHOOK = "webhook copy attempt event message_id rcpt event_id url api"  # the fields every webhook event shares


# a Locust worker's clock, as the master measured it (docs/scaling.md)
_CLOCK = "clock_uncertainty_ms clock_worst_uncertainty_ms clock_drift_ms clock_pings clock_origin_s"


class EventKind(StrEnum):
    """An event kind, with who writes it (`source`) and the data fields it carries (beyond ``t_s``,
    ``source``, ``kind`` and ``corr``). `optional` fields appear only on some events of the kind."""

    source: str
    fields: tuple[str, ...]
    optional: tuple[str, ...]

    def __new__(cls, value: str, source: str, fields: str, optional: str = "") -> EventKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.source = source
        member.fields = tuple(fields.split())
        member.optional = tuple(optional.split())
        return member

    # fake MTA
    MTA_LISTENER_OPENED = "mta.listener.opened", "mta/<name>", "host port reason"
    MTA_LISTENER_CLOSED = "mta.listener.closed", "mta/<name>", "host port reason"
    MTA_CONNECTION_OPENED = "mta.connection.opened", "mta/<name>", "conn peer"
    MTA_CONNECTION_CLOSED = "mta.connection.closed", "mta/<name>", "conn by reason"
    MTA_REPLY_SENT = ("mta.reply.sent", "mta/<name>",
                      "conn txn verb code enhanced text behavior closes mail_from rcpt",
                      # rcpt_count: DATA/DOT and vendors; the rest: a fake email-API vendor's reply only
                      "rcpt_count api method path http_status error_code api_key idempotency_key replayed")
    MTA_MESSAGE_ACCEPTED = ("mta.message.accepted", "mta/<name>",
                            "conn txn mail_from rcpt size_bytes message_id ack")
    MTA_MESSAGE_DISCARDED = ("mta.message.discarded", "mta/<name>",
                             "conn txn mail_from rcpt size_bytes message_id reason")
    MTA_MESSAGE_ACK_LOST = "mta.message.ack_lost", "mta/<name>", "conn txn rcpt reason"
    # a fake vendor's request it holds or never answers (the attempt no reply event would show)
    MTA_REQUEST_RECEIVED = "mta.request.received", "mta/<name>", "conn txn rcpt api endpoint behavior"
    MTA_PROTOCOL_ERROR = "mta.protocol.error", "mta/<name>", "conn error line"
    MTA_BEHAVIORS_CHANGED = "mta.behaviors.changed", "mta/<name>", "behaviors by"
    MTA_RESET = "mta.reset", "mta/<name>", "by"
    # a fake vendor's delivery webhooks (every one but SNS's subscription confirmation carries the _WEBHOOK fields)
    MTA_WEBHOOK_SENT = "mta.webhook.sent", "mta/<name>", "lag_s", _WEBHOOK
    MTA_WEBHOOK_ANSWERED = "mta.webhook.answered", "mta/<name>", "status latency_ms", _WEBHOOK
    MTA_WEBHOOK_FAILED = "mta.webhook.failed", "mta/<name>", "error latency_ms", _WEBHOOK
    MTA_WEBHOOK_HELD = "mta.webhook.held", "mta/<name>", "", _WEBHOOK
    MTA_WEBHOOK_DROPPED = "mta.webhook.dropped", "mta/<name>", "reason status", _WEBHOOK
    MTA_WEBHOOK_SUBSCRIPTION_CONFIRMED = "mta.webhook.subscription_confirmed", "mta/<name>", "topic_arn", _WEBHOOK
    # fault proxy
    PROXY_CREATED = "proxy.created", "proxy", "proxy listen upstream enabled"
    PROXY_DELETED = "proxy.deleted", "proxy", "proxy"
    PROXY_UPDATED = "proxy.updated", "proxy", "proxy listen upstream enabled"
    PROXY_ENABLED = "proxy.enabled", "proxy", "proxy"
    PROXY_DISABLED = "proxy.disabled", "proxy", "proxy"
    PROXY_TOXIC_ADDED = "proxy.toxic.added", "proxy", "proxy toxic type stream toxicity attributes"
    PROXY_TOXIC_UPDATED = "proxy.toxic.updated", "proxy", "proxy toxic type stream toxicity attributes"
    PROXY_TOXIC_REMOVED = "proxy.toxic.removed", "proxy", "proxy toxic"
    PROXY_RESET = "proxy.reset", "proxy", ""
    # load generator
    LOAD_STARTED = "load.started", "load/<worker>", "worker pid", "users planned host " + _CLOCK
    LOAD_REQUEST_COMPLETED = ("load.request.completed", "load/<worker>",
                              "class user resend method target status ok latency_ms started_t_s error",
                              "scheduled_t_s")
    LOAD_STOPPED = "load.stopped", "load/<worker>", "worker pid", "skipped_resends host " + _CLOCK
    # the Locust master of a distributed run (source "load/master")
    LOAD_MASTER_STARTED = "load.master.started", "load/master", "expected worker_wait_s clock_origin_s pid"
    LOAD_WORKER_JOINED = "load.worker.joined", "load/master", "worker_host worker_pid joined", _CLOCK
    LOAD_ARMED = "load.armed", "load/master", "workers expected users roster"
    LOAD_WORKER_LOST = "load.worker.lost", "load/master", "worker worker_host worker_pid reason"
    LOAD_WORKER_TURNED_AWAY = "load.worker.turned_away", "load/master", "worker_host worker_pid reason"
    # the system under test, as the harness sees it
    SUT_STARTED = "sut.started", "sut", "pid command port restart"
    SUT_READY = "sut.ready", "sut", "after_s"
    SUT_EXITED = "sut.exited", "sut", "code expected"
    SUT_CRASHED = "sut.crashed", "sut", "pid code"
    SUT_QUEUE_DEPTH_SAMPLED = "sut.queue_depth.sampled", "sut", "depth"
    # the reference mailer's own decisions on the vendors' delivery webhooks (examples/mailer)
    SUT_WEBHOOK_APPLIED = "sut.webhook.applied", "sut/mailer", "vendor message_id owner late event"
    SUT_WEBHOOK_IGNORED = "sut.webhook.ignored", "sut/mailer", "vendor message_id owner late event"
    # the run itself
    RUN_STARTED = "run.started", "run", "scenario seed time_scale"
    RUN_PHASE_CHANGED = "run.phase.changed", "run", "phase", "load_t0_s"
    RUN_ACTION_FIRED = "run.action.fired", "run", "action target what scheduled_t_s lag_ms until_t_s"
    RUN_ACTION_UNDONE = "run.action.undone", "run", "action target what scheduled_t_s lag_ms until_t_s"
    RUN_DRAIN_ENDED = "run.drain.ended", "run", "reason outstanding"
    RUN_DEGRADED = "run.degraded", "run", "component reason"
    RUN_ENDED = "run.ended", "run", "status"


EVENT_KINDS = frozenset(EventKind)

# What an MTA can be scripted to do (the `kind` of a behaviour); each has a spec model in
# maildrill.fake_mta.config and an implementation in maildrill.fake_mta.behaviors (tests hold both to this).
BEHAVIOR_KINDS = ("accept", "greylist", "throttle", "reject", "tempfail", "go_dark", "tarpit", "webhook_pause")

# The Toxiproxy toxic types the fault proxy implements and a scenario may name.
TOXIC_TYPES = ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data")
