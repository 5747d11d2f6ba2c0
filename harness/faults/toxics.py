"""Toxiproxy's seven toxics: their attributes (validated like a careful Toxiproxy), and what each does to a chunk.

Semantics follow Toxiproxy 2.x (toxics/*.go): `latency` delays every chunk by latency ± jitter ms from its
arrival; `bandwidth` paces to `rate` KB/s (1 KB = 1000 bytes); `slow_close` delays the close after the
source ends; `timeout` swallows all data and closes after `timeout` ms (0: never); `reset_peer` swallows
data and resets the connection (TCP RST) `timeout` ms after the first chunk; `slicer` cuts chunks into
pieces of about `average_size` ± `size_variation` bytes, `delay` µs apart; `limit_data` lets `bytes`
through, then closes. Stream `upstream` is client → server, `downstream` server → client (the default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTES: dict[str, dict[str, int]] = {  # type -> attribute -> default
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
STREAMS = ("upstream", "downstream")


class ToxicError(ValueError):
    """A bad toxic definition: `status` and a Toxiproxy-style message (the API sends both)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity}

    # --- what it does to data ------------------------------------------------------------------
    def latency_s(self, rng: random.Random) -> float:
        jitter = self.attributes.get("jitter", 0)
        delay = self.attributes.get("latency", 0) + (rng.randint(-jitter, jitter) if jitter > 0 else 0)
        return max(0, delay) / 1000.0

    def slices(self, data: bytes, rng: random.Random) -> list[bytes]:
        avg, var = self.attributes.get("average_size", 0), self.attributes.get("size_variation", 0)
        if avg <= 0:
            return [data]
        out: list[bytes] = []

        def cut(lo: int, hi: int) -> None:  # Toxiproxy's halving, iteratively bounded by len(data)
            stack = [(lo, hi)]
            while stack:
                a, b = stack.pop()
                if (b - a) - avg <= var:
                    out.append(data[a:b])
                    continue
                mid = a + (b - a) // 2 + (rng.randint(-var, var - 1) if var > 0 else 0)
                mid = min(max(mid, a + 1), b - 1)
                stack.append((mid, b))
                stack.append((a, mid))

        cut(0, len(data))
        return [s for s in out if s]


def parse_toxic(body: Any, *, existing: set[str]) -> Toxic:
    """A toxic from an API body (POST /proxies/{p}/toxics); raises ToxicError with Toxiproxy's status."""
    if not isinstance(body, dict):
        raise ToxicError("bad request body: expected a JSON object with type, stream, toxicity, attributes")
    stream = body.get("stream", "downstream")
    if stream not in STREAMS:
        raise ToxicError(f"stream was invalid, can be either upstream or downstream (got {stream!r})")
    kind = body.get("type")
    if kind not in ATTRIBUTES:
        raise ToxicError(f"invalid toxic type: {kind!r}; one of {', '.join(ATTRIBUTES)}")
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str):
        raise ToxicError(f"bad request body: name must be a string, got {name!r}")
    if name in existing:
        raise ToxicError(f"toxic already exists: {name!r} (remove it first, or PATCH it to change it)", 409)
    toxicity = _toxicity(body.get("toxicity", 1.0))
    attrs = dict(ATTRIBUTES[kind])
    attrs.update(_attributes(kind, body.get("attributes") or {}))
    return Toxic(name, kind, stream, toxicity, attrs)


def update_toxic(toxic: Toxic, body: Any) -> None:
    """PATCH: new attributes (merged) and/or toxicity."""
    if not isinstance(body, dict):
        raise ToxicError("bad request body: expected a JSON object with attributes and/or toxicity")
    attrs = _attributes(toxic.type, body.get("attributes") or {})
    toxicity = _toxicity(body["toxicity"]) if "toxicity" in body else toxic.toxicity
    toxic.attributes.update(attrs)
    toxic.toxicity = toxicity


def _toxicity(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise ToxicError(f"bad request body: toxicity must be a number from 0 to 1, got {v!r}")
    return float(v)


def _attributes(kind: str, attrs: Any) -> dict[str, int]:
    if not isinstance(attrs, dict):
        raise ToxicError(f"bad request body: attributes must be an object, got {attrs!r}")
    known = ATTRIBUTES[kind]
    out = {}
    for k, v in attrs.items():
        if k not in known:
            raise ToxicError(f"bad request body: {kind} has no attribute {k!r}; its attributes: {', '.join(known)}")
        if isinstance(v, float) and v.is_integer() and v >= 0:  # JSON 400.0: Go's int64 refuses it, so do we
            raise ToxicError(f"bad request body: {kind}.{k} is an integer; write {int(v)}, not {v!r} (Toxiproxy "
                             "refuses a decimal point here too)")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ToxicError(f"bad request body: {kind}.{k} must be a whole number >= 0, got {v!r}")
        out[k] = int(v)
    return out
