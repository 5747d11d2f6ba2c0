"""Toxiproxy's seven toxics: the registry (one module per toxic, each a `ToxicBehaviour`), a toxic's
definition as the API shows it, and the validation of API bodies (stricter than Toxiproxy: see
docs/fault-proxy.md). Stream `upstream` is client → server, `downstream` server → client (the default).
To add a toxic: a module here with its `ToxicBehaviour` subclass, listed in REGISTRY.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maildrill.harness.faults.toxics.bandwidth import Bandwidth
from maildrill.harness.faults.toxics.base import Chunk, ToxicBehaviour
from maildrill.harness.faults.toxics.latency import Latency
from maildrill.harness.faults.toxics.limit_data import LimitData
from maildrill.harness.faults.toxics.reset_peer import ResetPeer
from maildrill.harness.faults.toxics.slicer import Slicer
from maildrill.harness.faults.toxics.slow_close import SlowClose
from maildrill.harness.faults.toxics.timeout import Timeout

__all__ = ["ATTRIBUTES", "REGISTRY", "STREAMS", "TOXIC_TYPES", "Chunk", "Toxic", "ToxicBehaviour", "ToxicError",
           "parse_toxic", "update_toxic"]

REGISTRY: dict[str, type[ToxicBehaviour]] = {
    t.type: t for t in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData)}
TOXIC_TYPES = tuple(REGISTRY)
ATTRIBUTES: dict[str, dict[str, int]] = {k: dict(t.defaults) for k, t in REGISTRY.items()}  # type -> defaults
STREAMS = ("upstream", "downstream")
INT64_MAX = 2**63 - 1


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


def parse_toxic(body: Any, *, existing: set[str]) -> Toxic:
    """A toxic from an API body (POST /proxies/{p}/toxics); raises ToxicError with Toxiproxy's status."""
    if not isinstance(body, dict):
        raise ToxicError("bad request body: expected a JSON object with type, stream, toxicity, attributes")
    for key in ("name", "type", "stream"):
        if key in body and not isinstance(body[key], str):
            raise ToxicError(f"bad request body: {key} must be a string, got {body[key]!r}")
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
        if v > INT64_MAX:  # Go's int64 overflows: Toxiproxy answers 400, and so do we
            raise ToxicError(f"bad request body: {kind}.{k} = {v} is out of range (at most {INT64_MAX})")
        out[k] = int(v)
    return out
