"""Postmark webhooks: Delivery and Bounce JSON records (``RecordType``), unsigned (basic auth or custom headers).

A 403 stops retries; anything else not 2xx is retried 10 times: 1, 5, 10, 10, 10, 15, 30 min, 1, 2, 6 h (the
schedule Postmark documents for its webhooks' retries).
"""

from __future__ import annotations

from maildrill.fake_mta.vendors.webhooks.format import Format, Notice, iso, jbytes


class PostmarkEvents(Format):
    api = "postmark"
    retry_delays_s = (60.0, 300.0, 600.0, 600.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
    stop_statuses = frozenset({403})

    def event_id(self, event: str) -> str:
        return str(self.ids.randrange(1_000_000_000, 9_999_999_999))

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        server_id = n.extra.get("server_id", 1)
        if n.event == "delivered":
            rec = {"RecordType": "Delivery", "ServerID": server_id, "MessageStream": "outbound",
                   "MessageID": n.message_id, "Recipient": n.rcpt, "Tag": "", "DeliveredAt": iso(n.occurred),
                   "Details": "Test delivery webhook details", "Metadata": {}}
        else:  # bounce
            hard = n.bounce_type == "permanent"
            rec = {"RecordType": "Bounce", "ID": int(n.event_id), "Type": "HardBounce" if hard else "SoftBounce",
                   "TypeCode": 1 if hard else 4096, "Name": "Hard bounce" if hard else "Soft bounce",
                   "Tag": "", "MessageID": n.message_id, "ServerID": server_id, "MessageStream": "outbound",
                   "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not "
                   "found)." if hard else "The server could not temporarily deliver your message (ex: Message is "
                   "delayed due to network troubles).", "Details": "smtp;550 5.1.1 unknown user" if hard
                   else "smtp;452 4.2.2 mailbox full", "Email": n.rcpt, "From": n.sender or "",
                   "BouncedAt": iso(n.occurred), "DumpAvailable": False, "Inactive": hard, "CanActivate": True,
                   "Subject": "", "Content": "", "Metadata": {}}
        return jbytes(rec), {"User-Agent": "Postmark"}
