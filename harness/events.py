"""The event record: one immutable fact with a time, a source, a kind and a correlation id.

On disk (JSON Lines, one file per writer) the first line of every file is a header
``{"schema": "maildrill.events", "version": 1, "source": ..., "pid": ...}`` and every other line is
one event, flat: ``{"t_s": 1.25, "source": "mta/primary", "kind": "mta.reply.sent", "corr": "u17",
"code": 421, ...}``. ``t_s`` is seconds since the run's origin (maildrill.harness.clock); wall time lives in
the run manifest only. Data values are scalars (str, int, float, bool, null).

`EventKind` is the vocabulary every component writes and the analysis reads; docs/events.md
describes each kind's fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA = "maildrill.events"
SCHEMA_VERSION = 1
RESERVED = ("t_s", "source", "kind", "corr")

Scalar = str | int | float | bool | None


class EventKind(StrEnum):
    # fake MTA (source "mta/<name>")
    MTA_LISTENER_OPENED = "mta.listener.opened"
    MTA_LISTENER_CLOSED = "mta.listener.closed"
    MTA_CONNECTION_OPENED = "mta.connection.opened"
    MTA_CONNECTION_CLOSED = "mta.connection.closed"
    MTA_REPLY_SENT = "mta.reply.sent"
    MTA_MESSAGE_ACCEPTED = "mta.message.accepted"
    MTA_MESSAGE_DISCARDED = "mta.message.discarded"
    MTA_MESSAGE_ACK_LOST = "mta.message.ack_lost"
    MTA_REQUEST_RECEIVED = "mta.request.received"
    MTA_PROTOCOL_ERROR = "mta.protocol.error"
    MTA_BEHAVIORS_CHANGED = "mta.behaviors.changed"
    MTA_RESET = "mta.reset"
    # fake vendors' delivery webhooks (source "mta/<name>")
    MTA_WEBHOOK_SENT = "mta.webhook.sent"
    MTA_WEBHOOK_ANSWERED = "mta.webhook.answered"
    MTA_WEBHOOK_FAILED = "mta.webhook.failed"
    MTA_WEBHOOK_HELD = "mta.webhook.held"
    MTA_WEBHOOK_DROPPED = "mta.webhook.dropped"
    MTA_WEBHOOK_SUBSCRIPTION_CONFIRMED = "mta.webhook.subscription_confirmed"
    # fault proxy (source "proxy" or "proxy/<name>")
    PROXY_CREATED = "proxy.created"
    PROXY_DELETED = "proxy.deleted"
    PROXY_UPDATED = "proxy.updated"
    PROXY_ENABLED = "proxy.enabled"
    PROXY_DISABLED = "proxy.disabled"
    PROXY_TOXIC_ADDED = "proxy.toxic.added"
    PROXY_TOXIC_UPDATED = "proxy.toxic.updated"
    PROXY_TOXIC_REMOVED = "proxy.toxic.removed"
    PROXY_RESET = "proxy.reset"
    # load generator (source "load/<worker>")
    LOAD_STARTED = "load.started"
    LOAD_REQUEST_COMPLETED = "load.request.completed"
    LOAD_STOPPED = "load.stopped"
    # the Locust master (source "load/master"), distributed runs only
    LOAD_MASTER_STARTED = "load.master.started"
    LOAD_WORKER_JOINED = "load.worker.joined"
    LOAD_ARMED = "load.armed"
    LOAD_WORKER_LOST = "load.worker.lost"
    LOAD_WORKER_TURNED_AWAY = "load.worker.turned_away"
    # system under test, as seen by the harness (source "sut")
    SUT_STARTED = "sut.started"
    SUT_READY = "sut.ready"
    SUT_EXITED = "sut.exited"
    SUT_CRASHED = "sut.crashed"
    SUT_QUEUE_DEPTH_SAMPLED = "sut.queue_depth.sampled"
    # the run itself (source "run")
    RUN_STARTED = "run.started"
    RUN_PHASE_CHANGED = "run.phase.changed"
    RUN_ACTION_FIRED = "run.action.fired"
    RUN_ACTION_UNDONE = "run.action.undone"
    RUN_DRAIN_ENDED = "run.drain.ended"
    RUN_DEGRADED = "run.degraded"
    RUN_ENDED = "run.ended"


# one encoder for every event: json.dumps with options builds a new one per call (about twice as slow)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
try:  # the C encoder JSONEncoder.encode builds on every call, built once (same output; events are flat)
    _C_ENCODE = json.encoder.c_make_encoder(None, _ENCODER.default, json.encoder.encode_basestring, None,  # type: ignore
                                            ":", ",", False, False, True)
except (AttributeError, TypeError):  # no C accelerator
    _C_ENCODE = None


def encode_event(d: dict[str, Any]) -> str:
    """One event dict (``t_s, source, kind, corr`` + data) as its JSON line, without the newline."""
    if _C_ENCODE is None:
        return _ENCODER.encode(d)
    return "".join(_C_ENCODE(d, 0))


@dataclass(frozen=True, slots=True)
class Event:
    t_s: float
    source: str
    kind: str
    corr: str | None = None
    data: Mapping[str, Scalar] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in RESERVED:
            return getattr(self, key)
        return self.data[key]

    def to_dict(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "source": self.source, "kind": self.kind, "corr": self.corr, **self.data}

    def to_json(self) -> str:
        return encode_event(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """Raises KeyError/TypeError/ValueError on a record that is not an event."""
        t_s = d["t_s"]
        source = d["source"]
        kind = d["kind"]
        if not isinstance(t_s, int | float) or isinstance(t_s, bool):
            raise TypeError(f"t_s must be a number, got {t_s!r}")
        if not isinstance(source, str) or not isinstance(kind, str):
            raise TypeError("source and kind must be strings")
        corr = d.get("corr")
        if corr is not None and not isinstance(corr, str):
            raise TypeError(f"corr must be a string or null, got {corr!r}")
        data = {k: v for k, v in d.items() if k not in RESERVED}
        return cls(float(t_s), source, kind, corr, data)


def header(source: str, **extra: Scalar) -> dict[str, Any]:
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "source": source, **extra}
