"""The event record: one immutable fact with a time, a source, a kind and a correlation id.

On disk (JSON Lines, one file per writer) the first line of every file is a header
``{"schema": "maildrill.events", "version": 1, "source": ..., "pid": ...}`` and every other line is
one event, flat: ``{"t_s": 1.25, "source": "mta/primary", "kind": "mta.reply.sent", "corr": "u17",
"code": 421, ...}``. ``t_s`` is seconds since the run's origin (maildrill.harness.clock); wall time lives in
the run manifest only. Data values are scalars (str, int, float, bool, null).

`EventKind` (declared in `maildrill.vocabulary`, with each kind's fields; re-exported here) is the
vocabulary every component writes and the analysis reads; docs/events.md describes each kind's fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from maildrill.vocabulary import EVENT_KINDS, EventKind

__all__ = ["EVENT_KINDS", "RESERVED", "SCHEMA", "SCHEMA_VERSION", "Event", "EventKind", "Scalar", "header"]

SCHEMA = "maildrill.events"
SCHEMA_VERSION = 1
RESERVED = ("t_s", "source", "kind", "corr")

Scalar = str | int | float | bool | None


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
