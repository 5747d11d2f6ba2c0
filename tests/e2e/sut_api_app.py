"""A small system under test that sends through email APIs: SendGrid first, Amazon SES (v2) when it fails.

It stands in for a user's app and imports nothing from maildrill: the vendors' own SDKs, pointed at the
drill's fake vendors by their documented base-URL options. HTTP POST {"email"} → queue → a worker sends
with `SendGridAPIClient(host=MAILDRILL_API_PRIMARY_URL)`; any failure of that call (an HTTP error, a
connection closed before the response, a timeout) fails over to boto3 `sesv2` with
`endpoint_url=MAILDRILL_API_BACKUP_URL`; when both fail it waits SUT_RETRY_S and starts again with the
primary. It keeps no idempotency key (neither API has one), so a response lost after the primary stored
the message becomes a duplicate at the backup. `GET /healthz` → 200; `GET /metrics` → `sut_queue_depth N`.
"""

from __future__ import annotations

import functools
import os
import sys

import boto3
from botocore.config import Config
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail
from sut_front import finished, next_job, serve, stopping  # a sibling file: run as a script, its folder is on sys.path

PRIMARY_URL = os.environ["MAILDRILL_API_PRIMARY_URL"]
BACKUP_URL = os.environ["MAILDRILL_API_BACKUP_URL"]
RETRY_S = float(os.environ.get("SUT_RETRY_S", "0.5"))
MAX_ROUNDS = int(os.environ.get("SUT_MAX_ROUNDS", "50"))
WORKERS = int(os.environ.get("SUT_WORKERS", "4"))
TIMEOUT_S = float(os.environ.get("SUT_TIMEOUT_S", "10"))
SENDER = "noreply@sut.drill.test"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def via_sendgrid(client: SendGridAPIClient, rcpt: str, seq: int) -> str:
    mail = Mail(from_email=SENDER, to_emails=rcpt, subject="your code", plain_text_content=f"code {seq:06d}")
    response = client.send(mail)  # python-http-client raises on any HTTP error; a 202 is a success
    return f"sendgrid {response.status_code} {response.headers.get('X-Message-Id')}"


def via_ses(ses: object, rcpt: str, seq: int) -> str:
    out = ses.send_email(  # type: ignore[attr-defined]
        FromEmailAddress=SENDER, Destination={"ToAddresses": [rcpt]},
        Content={"Simple": {"Subject": {"Data": "your code"}, "Body": {"Text": {"Data": f"code {seq:06d}"}}}})
    return f"ses {out['MessageId']}"


def clients() -> tuple[SendGridAPIClient, object]:
    """One SDK client of each vendor (made in the main thread: boto3's default session is not thread-safe)."""
    sendgrid = SendGridAPIClient(api_key="SG.drill-key", host=PRIMARY_URL)
    sendgrid.client.timeout = TIMEOUT_S  # the SDK's default is none: a vendor that hangs would hang us
    ses = boto3.client("sesv2", endpoint_url=BACKUP_URL, region_name="us-east-1", aws_access_key_id="AKIDRILL",
                       aws_secret_access_key="drill-secret",
                       config=Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S))
    return sendgrid, ses


def worker(sendgrid: SendGridAPIClient, ses: object) -> None:
    while not stopping.is_set():
        job = next_job()
        if job is None:
            continue
        rcpt, _kind, seq = job
        for round_ in range(1, MAX_ROUNDS + 1):
            done = False
            for name, send, client in (("primary", via_sendgrid, sendgrid), ("backup", via_ses, ses)):
                try:
                    log(f"seq={seq} rcpt={rcpt} round={round_} {name} sent: {send(client, rcpt, seq)}")
                    done = True
                    break
                except Exception as exc:  # any failure of this vendor: try the next one
                    log(f"seq={seq} rcpt={rcpt} round={round_} {name} failed: {type(exc).__name__}: {exc}")
            if done or stopping.wait(RETRY_S):
                break
        finished()


def main() -> int:
    workers = [functools.partial(worker, *clients()) for _ in range(WORKERS)]
    return serve(int(os.environ["MAILDRILL_SUT_PORT"]), workers,
                 f"primary={PRIMARY_URL} backup={BACKUP_URL} default={os.environ.get('MAILDRILL_API_URL')}")


if __name__ == "__main__":
    sys.exit(main())
