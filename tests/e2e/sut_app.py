"""A small system under test for maildrill's own drills: HTTP POST {"email"} → queue → smtplib with a fixed retry.

Stdlib only (it stands in for a user's app and imports nothing from maildrill). Reads
MAILDRILL_SUT_PORT, MAILDRILL_SMTP_HOST/PORT and SUT_RETRY_S (delay between attempts, default 0.5).
Answers 202 once the message is queued; `GET /healthz` → 200; `GET /metrics` → `sut_queue_depth N`.
Retries every failure (4xx, 5xx, connection refused) until it is accepted or SUT_MAX_ATTEMPTS.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import smtplib
import sys
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SMTP_HOST = os.environ.get("MAILDRILL_SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("MAILDRILL_SMTP_PORT", "25"))
RETRY_S = float(os.environ.get("SUT_RETRY_S", "0.5"))
MAX_ATTEMPTS = int(os.environ.get("SUT_MAX_ATTEMPTS", "200"))
WORKERS = int(os.environ.get("SUT_WORKERS", "4"))

jobs: queue.Queue[tuple[str, str, int]] = queue.Queue()
pending = 0
lock = threading.Lock()
stopping = threading.Event()


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
    global pending
    while not stopping.is_set():
        try:
            rcpt, kind, seq = jobs.get(timeout=0.2)
        except queue.Empty:
            continue
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                send(rcpt, kind, seq)
                outcome = "sent"
            except (OSError, smtplib.SMTPException) as exc:
                outcome = f"failed {type(exc).__name__}"
            print(f"seq={seq} rcpt={rcpt} attempt={attempt} {outcome}", file=sys.stderr, flush=True)
            if outcome == "sent" or stopping.wait(RETRY_S):
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
        jobs.put((rcpt, self.path.strip("/") or "otp", seq))
        self._reply(202, json.dumps({"id": seq}).encode())

    def log_message(self, *args: object) -> None:  # quiet: one line per SMTP attempt is the useful log
        pass


def main() -> int:
    port = int(os.environ["MAILDRILL_SUT_PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    for _ in range(WORKERS):
        threading.Thread(target=worker, daemon=True).start()

    def stop(*_: object) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"sut: listening on http://127.0.0.1:{port} smtp={SMTP_HOST}:{SMTP_PORT} "
          f"time_scale={os.environ.get('MAILDRILL_TIME_SCALE')} run_dir={os.environ.get('MAILDRILL_RUN_DIR')}",
          flush=True)
    server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
