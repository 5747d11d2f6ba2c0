"""A small system under test for maildrill's own drills: HTTP POST {"email"} → queue → smtplib with a fixed retry.

Stdlib only (it stands in for a user's app and imports nothing from maildrill). Reads
MAILDRILL_SUT_PORT, MAILDRILL_SMTP_HOST/PORT and SUT_RETRY_S (delay between attempts, default 0.5).
Answers 202 once the message is queued; `GET /healthz` → 200; `GET /metrics` → `sut_queue_depth N`.
Retries every failure (4xx, 5xx, connection refused) until it is accepted or SUT_MAX_ATTEMPTS.
"""

from __future__ import annotations

import os
import smtplib
import sys
from email.message import EmailMessage

from sut_front import finished, next_job, serve, stopping  # a sibling file: run as a script, its folder is on sys.path

SMTP_HOST = os.environ.get("MAILDRILL_SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("MAILDRILL_SMTP_PORT", "25"))
RETRY_S = float(os.environ.get("SUT_RETRY_S", "0.5"))
MAX_ATTEMPTS = int(os.environ.get("SUT_MAX_ATTEMPTS", "200"))
WORKERS = int(os.environ.get("SUT_WORKERS", "4"))


def send(rcpt: str, kind: str, seq: int) -> None:
    msg = EmailMessage()
    msg["From"] = "noreply@sut.drill.test"
    msg["To"] = rcpt
    msg["Subject"] = f"{kind} code"
    msg["Message-ID"] = f"<{seq}.sut@sut.drill.test>"
    msg.set_content(f"your {kind} code is {seq:06d}")
    with smtplib.SMTP(SMTP_HOST, SMTP_PORT, timeout=10) as s:
        s.send_message(msg)


def worker() -> None:
    while not stopping.is_set():
        job = next_job()
        if job is None:
            continue
        rcpt, kind, seq = job
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                send(rcpt, kind, seq)
                outcome = "sent"
            except (OSError, smtplib.SMTPException) as exc:
                outcome = f"failed {type(exc).__name__}"
            print(f"seq={seq} rcpt={rcpt} attempt={attempt} {outcome}", file=sys.stderr, flush=True)
            if outcome == "sent" or stopping.wait(RETRY_S):
                break
        finished()


def main() -> int:
    return serve(int(os.environ["MAILDRILL_SUT_PORT"]), [worker] * WORKERS,
                 f"smtp={SMTP_HOST}:{SMTP_PORT} time_scale={os.environ.get('MAILDRILL_TIME_SCALE')} "
                 f"run_dir={os.environ.get('MAILDRILL_RUN_DIR')}")


if __name__ == "__main__":
    sys.exit(main())
