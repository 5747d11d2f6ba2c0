"""SendGrid Event Webhook: a JSON array of events (processed, deferred, delivered, bounce, dropped).

Each event carries ``email``, ``timestamp`` (epoch), ``smtp-id``, ``event``, ``sg_event_id``, ``sg_message_id``
(the send's X-Message-Id plus a per-message suffix), and per kind ``response`` / ``attempt`` (deferred),
``reason`` / ``status`` / ``type`` (bounce, dropped). With a `secret`, each POST is signed as SendGrid's Signed
Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body`` in ``X-Twilio-Email-Event-Webhook-Signature``
(base64 DER), the timestamp in ``X-Twilio-Email-Event-Webhook-Timestamp``; `verification_key` is the base64 DER
public key SendGrid shows under Mail Settings. A failed POST is retried at increasing intervals (1, 2, 4, 8, 16,
32 min, then hourly) until 24 h after the event (SendGrid documents the 24 h, not the intervals).
"""

from __future__ import annotations

import hashlib
import random

from maildrill.fake_mta.vendors.webhooks.format import Format, Notice, b64, jbytes, now_epoch
from maildrill.fake_mta.webhook_spec import WebhookSpec

HORIZON_S = 24 * 3600.0


def _schedule() -> tuple[float, ...]:
    delays, total = [], 0.0
    d = 60.0
    while total + d <= HORIZON_S:
        delays.append(d)
        total += d
        d = min(d * 2, 3600.0)
    return tuple(delays)


class SendGridEvents(Format):
    api = "sendgrid"
    retry_delays_s = _schedule()

    def __init__(self, spec: WebhookSpec, rng: random.Random, vendor_name: str) -> None:
        super().__init__(spec, rng, vendor_name)
        self._key = None
        if spec.secret is not None:
            from cryptography.hazmat.primitives.asymmetric import ec

            scalar = int.from_bytes(hashlib.sha256(spec.secret.encode()).digest(), "big")
            order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order
            self._key = ec.derive_private_key(scalar % (order - 1) + 1, ec.SECP256R1())

    @property
    def verification_key(self) -> str | None:
        if self._key is None:
            return None
        from cryptography.hazmat.primitives import serialization

        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return b64(der)

    def event_id(self, event: str) -> str:
        return b64(self.ids.getrandbits(168).to_bytes(21, "big")).replace("+", "-").replace("/", "_")

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        ev = {
            "email": n.rcpt,
            "timestamp": int(n.occurred),
            "smtp-id": f"<{n.message_id}@{self.vendor_name}.sendgrid.test>",
            "event": n.event,
            "category": [],
            "sg_event_id": n.event_id,
            "sg_message_id": f"{n.message_id}.filterdrecv-{n.extra['suffix']}",
        }
        if n.event == "delivered":
            ev.update(response="250 2.0.0 OK", tls=1, ip="203.0.113.10")
        elif n.event == "deferred":
            ev.update(response="421 4.7.0 try again later", attempt=str(n.extra.get("smtp_attempt", 1)))
        elif n.event == "bounce":
            permanent = n.bounce_type == "permanent"
            ev.update(reason="550 5.1.1 The email account that you tried to reach does not exist" if permanent
                      else "452 4.2.2 The email account that you tried to reach is over quota",
                      status="5.1.1" if permanent else "4.2.2", type="bounce" if permanent else "blocked",
                      bounce_classification="Invalid Address" if permanent else "Mailbox Unavailable")
        elif n.event == "dropped":
            ev.update(reason="Bounced Address", status="5.0.0")
        body = jbytes([ev])
        headers: dict[str, str] = {"User-Agent": "SendGrid Event API"}
        if self._key is not None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec

            ts = str(int(now_epoch()))
            sig = self._key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
            headers["X-Twilio-Email-Event-Webhook-Signature"] = b64(sig)
            headers["X-Twilio-Email-Event-Webhook-Timestamp"] = ts
        return body, headers

    def next_delay_s(self, n: Notice, attempt: int, status: int | None) -> float | str:
        return super().next_delay_s(n, attempt, status)
