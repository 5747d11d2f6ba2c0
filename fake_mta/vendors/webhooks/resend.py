"""Resend webhooks: ``{"type": "email.delivered", "created_at", "data": {...}}`` signed Svix-style.

Headers ``svix-id`` (the same on every retry and duplicate), ``svix-timestamp`` (epoch seconds) and
``svix-signature`` ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed by the base64 part of the ``whsec_``
secret. A failed POST is retried after 5 s, 5 min, 30 min, 2, 5, 10 and 10 h (the first attempt is immediate).
"""

from __future__ import annotations

import base64
import random

from maildrill.fake_mta.vendors.webhooks.format import (
    Format,
    Notice,
    b64,
    hmac_sha256,
    iso,
    jbytes,
    now_epoch,
    seeded_secret,
)
from maildrill.fake_mta.webhook_spec import WebhookSpec

EVENT = {"processed": "email.sent", "deferred": "email.delivery_delayed", "delivered": "email.delivered",
         "bounce": "email.bounced", "dropped": "email.failed"}
_KSUID = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ResendEvents(Format):
    api = "resend"
    retry_delays_s = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

    def __init__(self, spec: WebhookSpec, rng: random.Random, vendor_name: str) -> None:
        super().__init__(spec, rng, vendor_name)
        self.secret = spec.secret if spec.secret is not None else "whsec_" + b64(seeded_secret(rng, 24))
        self._key = base64.b64decode(self.secret.removeprefix("whsec_"))

    @property
    def verification_key(self) -> str | None:
        return self.secret

    def shared(self) -> dict[str, str]:
        return {"secret": self.secret}

    def adopt(self, shared: dict[str, str]) -> None:
        self.secret = shared["secret"]
        self._key = base64.b64decode(self.secret.removeprefix("whsec_"))

    def event_id(self, event: str) -> str:
        return "msg_" + "".join(self.ids.choice(_KSUID) for _ in range(27))

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        data: dict[str, object] = {"email_id": n.message_id, "from": n.sender or "", "to": [n.rcpt],
                                   "subject": "", "created_at": iso(n.extra["accepted_wall"])}
        if n.event == "bounce":
            hard = n.bounce_type == "permanent"
            data["bounce"] = {"message": "The recipient's mailbox does not exist" if hard
                              else "The recipient's mailbox is full",
                              "type": "Permanent" if hard else "Transient",
                              "subType": "General" if hard else "MailboxFull"}
        elif n.event == "dropped":
            data["failed"] = {"reason": "suppressed"}
        body = jbytes({"type": EVENT[n.event], "created_at": iso(n.occurred), "data": data})
        ts = str(int(now_epoch()))
        sig = b64(hmac_sha256(self._key, f"{n.event_id}.{ts}.".encode() + body))
        return body, {"svix-id": n.event_id, "svix-timestamp": ts, "svix-signature": f"v1,{sig}",
                      "User-Agent": "Svix-Webhooks/1.0"}
