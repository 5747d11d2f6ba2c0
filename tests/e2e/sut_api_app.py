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

import json
import os
import queue
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

PRIMARY_URL = os.environ["MAILDRILL_API_PRIMARY_URL"]
BACKUP_URL = os.environ["MAILDRILL_API_BACKUP_URL"]
RETRY_S = float(os.environ.get("SUT_RETRY_S", "0.5"))
MAX_ROUNDS = int(os.environ.get("SUT_MAX_ROUNDS", "50"))
WORKERS = int(os.environ.get("SUT_WORKERS", "4"))
TIMEOUT_S = float(os.environ.get("SUT_TIMEOUT_S", "10"))
SENDER = "noreply@sut.drill.test"

jobs: queue.Queue[tuple[str, int]] = queue.Queue()
pending = 0
lock = threading.Lock()
stopping = threading.Event()


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
    global pending
    while not stopping.is_set():
        try:
            rcpt, seq = jobs.get(timeout=0.2)
        except queue.Empty:
            continue
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
        with lock:
            pending -= 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seq = 0

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b'{"status": "ok"}')
        elif self.path == "/metrics":
            self._reply(200, f"sut_queue_depth {pending}\n".encode(), "text/plain")
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        global pending
        length = int(self.headers.get("Content-Length") or 0)
        try:
            rcpt = json.loads(self.rfile.read(length))["email"]
        except (ValueError, KeyError, TypeError):
            self._reply(400, b'{"error": "body must be {\\"email\\": ...}"}')
            return
        with lock:
            Handler.seq += 1
            seq = Handler.seq
            pending += 1
        jobs.put((rcpt, seq))
        self._reply(202, json.dumps({"id": seq}).encode())

    def log_message(self, *args: object) -> None:  # quiet: one line per API attempt is the useful log
        pass


def main() -> int:
    port = int(os.environ["MAILDRILL_SUT_PORT"])
    for pair in [clients() for _ in range(WORKERS)]:
        threading.Thread(target=worker, args=pair, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(*_: object) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"sut: listening on http://127.0.0.1:{port} primary={PRIMARY_URL} backup={BACKUP_URL} "
          f"default={os.environ.get('MAILDRILL_API_URL')}", flush=True)
    server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
