"""A small retry function written the usual way — smtplib plus a retry decorator — in two versions.

`send_naive` retries *every* failure on a fixed short delay: a 550 (unknown user) is retried as if it were a
421, and a connection lost after the final dot (the 250 never arrived) is sent again. `send_hardened` retries
only temporary failures (4xx, refused or dropped connections *before* the message was handed over), backs
off exponentially, and never re-sends a message whose outcome is unknown (the receiver may have it).
"""

from __future__ import annotations

import functools
import smtplib
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
MESSAGE = b"Subject: Your sign-in code\r\n\r\n123456\r\n"


def retry(attempts: int, delay_s: float, *, retry_on: Callable[[Exception], bool] = lambda exc: True,
          backoff: float = 1.0) -> Callable[[F], F]:
    """The retry decorator everyone writes."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            delay = delay_s
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if attempt == attempts or not retry_on(exc):
                        raise
                    time.sleep(delay)  # the retry delay under test
                    delay *= backoff
            raise AssertionError("unreachable")
        return run  # type: ignore[return-value]
    return wrap


def _send_once(host: str, port: int, rcpt: str) -> None:
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.sendmail("app@app.drill.test", [rcpt], MESSAGE)


@retry(attempts=3, delay_s=0.01)
def send_naive(host: str, port: int, rcpt: str) -> None:
    _send_once(host, port, rcpt)


class UnknownOutcome(Exception):
    """The connection ended after the message was handed over: it may have been delivered. Never re-send."""


def _temporary(exc: Exception) -> bool:
    if isinstance(exc, UnknownOutcome):
        return False
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError | smtplib.SMTPServerDisconnected)


@retry(attempts=4, delay_s=0.02, retry_on=_temporary, backoff=3.0)
def send_hardened(host: str, port: int, rcpt: str) -> None:
    smtp = smtplib.SMTP(host, port, timeout=5)
    try:
        smtp.ehlo()
        code, resp = smtp.mail("app@app.drill.test")
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, "app@app.drill.test")
        code, resp = smtp.rcpt(rcpt)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, resp)})
        code, resp = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, resp)
        try:
            smtp.send(MESSAGE + b".\r\n")
            code, resp = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise UnknownOutcome(f"connection lost after the final dot: {exc}") from exc
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
