"""One SMTP delivery attempt (smtplib, stage by stage so a lost ack is told apart) and the vendor status lookup."""

from __future__ import annotations

import contextlib
import json
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate

from maildrill.examples.mailer.config import Endpoint
from maildrill.examples.mailer.policy import Attempt, Outcome
from maildrill.examples.mailer.queue import Kind, Message

SENDER_DOMAIN = "mailer.drill.test"
_SUBJECTS = {
    Kind.OTP: "Your sign-in code",
    Kind.PASSWORD_RESET: "Reset your password",
    Kind.NEWSLETTER: "This month at Example",
}


def verp_sender(rcpt: str) -> str:
    """`bounce+<local>=<domain>@mailer.drill.test`: a MAIL-stage deferral names the recipient it was for."""
    local, _, domain = rcpt.rpartition("@")
    return f"bounce+{local}={domain}@{SENDER_DOMAIN}"


def render(message: Message) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Example <no-reply@{SENDER_DOMAIN}>"
    mail["To"] = message.email
    mail["Subject"] = _SUBJECTS[message.kind]
    mail["Message-ID"] = message.message_id  # fixed at enqueue: the same across retries and failover
    mail["Date"] = formatdate(message.created_at)
    mail["X-Mailer-Kind"] = message.kind.value
    if message.kind is Kind.NEWSLETTER:
        mail.set_content("Hello,\n\nHere is what happened this month.\n")
    else:
        mail.set_content(f"Your code is {message.code}. It expires in 5 minutes.\n")
    return mail.as_bytes()


def _reply(code: int, text: bytes | str, stage: str) -> Attempt:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if 200 <= code < 400:
        return Attempt(Outcome.SENT, code, text, stage)
    return Attempt(Outcome.PERMFAIL if code >= 500 else Outcome.TEMPFAIL, code, text, stage)


def attempt(endpoint: Endpoint, message: Message, *, timeout_s: float) -> Attempt:
    """Deliver `message` once over a fresh connection; never raises for SMTP or network trouble."""
    stage = "CONNECT"
    client = smtplib.SMTP(timeout=timeout_s)
    try:
        try:
            code, text = client.connect(endpoint.host, endpoint.port)
        except ConnectionRefusedError as exc:
            return Attempt(Outcome.REFUSED, 0, str(exc), stage)
        if code != 220:
            return _reply(code, text, stage)
        for stage, call in (
            ("EHLO", lambda: client.ehlo(SENDER_DOMAIN)),
            ("MAIL", lambda: client.mail(verp_sender(message.email))),
            ("RCPT", lambda: client.rcpt(message.email)),
            ("DATA", lambda: client.docmd("DATA")),
        ):
            code, text = call()
            if code != (354 if stage == "DATA" else 250):
                if stage == "EHLO" and code == 502:
                    code, text = client.helo(SENDER_DOMAIN)
                    if code == 250:
                        continue
                return _reply(code, text, stage)
        stage = "DOT"
        body = smtplib.quotedata(render(message).decode("ascii", "surrogateescape")).encode("ascii", "surrogateescape")
        client.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        try:
            code, text = client.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The whole message went out; whether the receiver kept it is unknown (the lost ack).
            return Attempt(Outcome.UNKNOWN, 0, f"{type(exc).__name__}: {exc}", stage)
        result = _reply(code, text, stage)
        # The message is already decided; a rude close after the 250 changes nothing.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
        return result
    except smtplib.SMTPServerDisconnected as exc:
        return Attempt(Outcome.CONN_ERROR, 0, f"disconnected at {stage}: {exc}", stage)
    except (OSError, smtplib.SMTPException) as exc:
        return Attempt(Outcome.CONN_ERROR, 0, f"{type(exc).__name__} at {stage}: {exc}", stage)
    finally:
        client.close()


def vendor_accepted(control_url: str, vendor: str, message_id: str, *, timeout_s: float = 5.0) -> bool | None:
    """Ask the vendor's delivery-status API whether it accepted `message_id`: True, False, or None if unreachable."""
    for candidate in (message_id, message_id.strip("<>")):
        quoted = urllib.parse.quote(vendor, safe=""), urllib.parse.quote(candidate, safe="")
        url = f"{control_url}/mtas/{quoted[0]}/messages/{quoted[1]}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                body = json.loads(resp.read() or b"{}")
                if bool(body.get("accepted", True)):
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return None
        except (OSError, ValueError):
            return None
    return False
