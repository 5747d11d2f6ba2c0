"""Mailgun webhooks: ``{"signature": {"token", "timestamp", "signature"}, "event-data": {...}}``.

The signature is HMAC-SHA256 of ``timestamp + token`` keyed by the HTTP webhook signing key, hex, in the body.
``event-data`` has ``event`` (accepted, delivered, failed with ``severity`` permanent/temporary), ``id``,
``timestamp``, ``recipient``, ``message.headers.message-id``. A 406 stops retries; anything else not 2xx is retried
at 5, 10, 15 min, 1, 2 and 4 h — except ``delivered`` events, which Mailgun never retries.
"""

from __future__ import annotations

import random

from maildrill.fake_mta.vendors.webhooks.format import Format, Notice, hmac_sha256, jbytes, now_epoch, seeded_secret
from maildrill.fake_mta.webhook_spec import WebhookSpec

EVENT = {"processed": "accepted", "deferred": "failed", "delivered": "delivered", "bounce": "failed",
         "dropped": "failed"}


class MailgunEvents(Format):
    api = "mailgun"
    retry_delays_s = (300.0, 600.0, 900.0, 3600.0, 7200.0, 14400.0)
    stop_statuses = frozenset({406})

    def __init__(self, spec: WebhookSpec, rng: random.Random, vendor_name: str) -> None:
        super().__init__(spec, rng, vendor_name)
        self.signing_key = spec.secret if spec.secret is not None else seeded_secret(rng, 16).hex()

    @property
    def verification_key(self) -> str | None:
        return self.signing_key

    def shared(self) -> dict[str, str]:
        return {"signing_key": self.signing_key}

    def adopt(self, shared: dict[str, str]) -> None:
        self.signing_key = shared["signing_key"]

    def event_id(self, event: str) -> str:
        return self.ids.getrandbits(132).to_bytes(17, "big").hex()[:22]

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        ts = str(int(now_epoch()))
        token = self.ids.getrandbits(200).to_bytes(25, "big").hex()
        data: dict[str, object] = {
            "event": EVENT[n.event], "id": n.event_id, "timestamp": round(n.occurred, 6), "recipient": n.rcpt,
            "recipient-domain": n.rcpt.rpartition("@")[2], "log-level": "info",
            "message": {"headers": {"message-id": n.message_id.strip("<>"), "from": n.sender or "",
                                    "to": n.rcpt}},
            "flags": {"is-test-mode": False}, "user-variables": {},
        }
        if n.event == "delivered":
            data["delivery-status"] = {"code": 250, "message": "OK", "description": "", "attempt-no": 1}
        elif n.event in ("bounce", "deferred", "dropped"):
            temporary = n.event == "deferred" or (n.event == "bounce" and n.bounce_type == "transient")
            data["log-level"] = "warn" if temporary else "error"
            data["severity"] = "temporary" if temporary else "permanent"
            data["reason"] = ("suppress-bounce" if n.event == "dropped" else "generic")
            data["delivery-status"] = ({"code": 452, "message": "mailbox full", "attempt-no": 1} if temporary
                                       else {"code": 550, "message": "5.1.1 no such user", "attempt-no": 1})
        sig = hmac_sha256(self.signing_key.encode(), (ts + token).encode()).hex()
        body = {"signature": {"token": token, "timestamp": ts, "signature": sig}, "event-data": data}
        return jbytes(body), {"User-Agent": "mailgun/treq-16.12.0"}

    def next_delay_s(self, n: Notice, attempt: int, status: int | None) -> float | str:
        if n.event == "delivered" and (status is None or status not in self.stop_statuses):
            return "not_retried"
        return super().next_delay_s(n, attempt, status)
