"""What every vendor's webhook format provides: the event to send, its body and headers, its retry schedule."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maildrill.fake_mta.webhook_spec import WebhookSpec


@dataclass(slots=True)
class Notice:
    """One delivery event for the SUT. A duplicate is a second Notice with the same `webhook` and `event_id`."""

    webhook: int  # the event's number on this vendor (copies share it)
    copy: int  # 0 the first, 1 the duplicate
    event: str  # neutral name: processed, deferred, delivered, bounce, dropped
    message_id: str
    rcpt: str
    sender: str | None
    corr: str | None
    accepted_t: float  # clock time of the acceptance
    occurred: float  # epoch seconds the event happened (payload timestamps)
    event_id: str  # the vendor's dedupe key (sg_event_id, SNS MessageId, svix-id, event-data.id)
    bounce_type: str = "permanent"
    extra: dict[str, Any] = field(default_factory=dict)


def iso(epoch: float, *, ms: bool = True) -> str:
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond // 1000:03d}Z" if ms else "Z")


def jbytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def seeded_secret(rng: random.Random, n: int = 24) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "big")


class Format:
    """Subclasses: `api`, `retry_delays_s` (delay after attempt 1, 2, ...), `stop_statuses`, `render`."""

    api = "vendor"
    retry_delays_s: tuple[float, ...] = ()
    stop_statuses: frozenset[int] = frozenset()
    content_type = "application/json"

    def __init__(self, spec: WebhookSpec, rng: random.Random, vendor_name: str) -> None:
        self.spec = spec
        self.ids = rng
        self.vendor_name = vendor_name

    @property
    def verification_key(self) -> str | None:
        """What the SUT needs to verify signatures (a public key, a signing key, a whsec_ secret), or None."""
        return None

    def shared(self) -> dict[str, str]:
        """What sibling processes serving this vendor (`maildrill mta --processes N`) must use too: the signing
        secrets and keys the SUT verifies with (each process draws its own ids, never these)."""
        return {}

    def adopt(self, shared: dict[str, str]) -> None:
        """Use the first process's `shared()` in place of this process's own draws."""

    def event_id(self, event: str) -> str:
        return f"{self.ids.getrandbits(128):032x}"

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def next_delay_s(self, n: Notice, attempt: int, status: int | None) -> float | str:
        """Seconds (unscaled) until the next attempt after `attempt` failed with `status` (None: timeout or
        connection error), or the reason there is none: refused (a stop status), not_retried, retries_exhausted."""
        if status is not None and status in self.stop_statuses:
            return "refused"
        if attempt - 1 < len(self.retry_delays_s):
            return self.retry_delays_s[attempt - 1]
        return "retries_exhausted"

    def preamble(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """POSTs sent once before the first event (SNS: the SubscriptionConfirmation), as (label, body, headers)."""
        return []


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    import hmac

    return hmac.new(key, msg, hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def now_epoch() -> float:
    """Wall time, for payload and signature timestamps only (receivers check them against their own clocks)."""
    return time.time()
