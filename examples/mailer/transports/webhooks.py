"""Delivery webhooks the vendors POST to the mailer (`POST /hooks/<vendor>`): each vendor's documented format
read down to (the vendor's message id, an event in one vocabulary: processed, deferred, delivered, bounce,
dropped). Signatures are not checked here: the reference mailer listens on loopback only."""

from __future__ import annotations

import json
from typing import Any


class WebhookError(ValueError):
    """The body is not the vendor's webhook format; the message says what was expected."""


_SES = {
    "Delivery": "delivered",
    "Bounce": "bounce",
    "Send": "processed",
    "DeliveryDelay": "deferred",
    "Reject": "dropped",
    "Complaint": "complaint",
}
_RESEND = {
    "email.delivered": "delivered",
    "email.bounced": "bounce",
    "email.sent": "processed",
    "email.delivery_delayed": "deferred",
    "email.failed": "dropped",
    "email.complained": "complaint",
}
_POSTMARK = {"Delivery": "delivered", "Bounce": "bounce"}
_MAILGUN = {"delivered": "delivered", "accepted": "processed", "rejected": "dropped"}


def _sendgrid(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, list):
        raise WebhookError("SendGrid's Event Webhook posts a JSON array of events")
    out = []
    for ev in body:
        sg = str(ev.get("sg_message_id") or "") if isinstance(ev, dict) else ""
        if sg:
            out.append((sg.split(".", 1)[0], str(ev.get("event"))))  # the X-Message-Id, before its per-message suffix
    return out


def _ses(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or "Type" not in body:
        raise WebhookError("SES events come in an SNS envelope: a JSON object with Type and Message")
    if body["Type"] != "Notification":
        return []  # SubscriptionConfirmation / UnsubscribeConfirmation: nothing about a message
    inner = json.loads(body.get("Message") or "{}")
    kind = inner.get("eventType") or inner.get("notificationType") or ""
    mid = (inner.get("mail") or {}).get("messageId")
    return [(str(mid), _SES.get(kind, kind.lower()))] if mid else []


def _postmark(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or "MessageID" not in body:
        raise WebhookError("Postmark posts one JSON object with RecordType and MessageID")
    kind = str(body.get("RecordType", ""))
    return [(str(body["MessageID"]), _POSTMARK.get(kind, kind.lower()))]


def _mailgun(body: Any) -> list[tuple[str, str]]:
    data = body.get("event-data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise WebhookError("Mailgun posts a JSON object with signature and event-data")
    mid = ((data.get("message") or {}).get("headers") or {}).get("message-id")
    kind = str(data.get("event", ""))
    if kind == "failed":
        kind = "bounce" if data.get("severity") == "permanent" else "deferred"
    return [(str(mid).strip("<>"), _MAILGUN.get(kind, kind))] if mid else []


def _resend(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise WebhookError("Resend posts a JSON object with type and data.email_id")
    mid, kind = body["data"].get("email_id"), str(body.get("type", ""))
    return [(str(mid), _RESEND.get(kind, kind))] if mid else []


PARSERS = {"sendgrid": _sendgrid, "ses": _ses, "postmark": _postmark, "mailgun": _mailgun, "resend": _resend}


def parse(api: str, raw: bytes) -> list[tuple[str, str]]:
    """(vendor message id, event) pairs of one webhook POST; WebhookError when it is not the vendor's format."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise WebhookError(f"not JSON ({exc})") from None
    return PARSERS[api](body)


def normal_id(api: str, vendor_id: str) -> str:
    """The SDK's message id as the webhooks spell it (Mailgun's send reply has it in angle brackets)."""
    return vendor_id.strip("<>") if api == "mailgun" else vendor_id
