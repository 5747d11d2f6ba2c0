"""A small system under test that sends through SendGrid's SDK and receives SendGrid's Event Webhook.

It imports nothing from maildrill. ``POST /otp {"email"}`` sends at once with
``SendGridAPIClient(host=MAILDRILL_API_URL)`` and answers 202; ``POST /hooks/sendgrid`` checks the signature with
the sendgrid package's own ``EventWebhook`` (the public key read once from the fleet's control API, as a user
pastes it from SendGrid's settings), answers 401 when it does not verify, else 200, and prints
``webhook <event> <email>`` per event. ``GET /healthz`` → 200.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Mail

API_URL = os.environ["MAILDRILL_API_URL"]
CONTROL_URL = os.environ["MAILDRILL_CONTROL_URL"]
_key = None
_out = threading.Lock()


def say(line: str) -> None:
    with _out:  # handler threads print concurrently: one whole line at a time
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def public_key():
    global _key
    if _key is None:
        with urllib.request.urlopen(f"{CONTROL_URL}/vendors/primary", timeout=10) as r:
            _key = EventWebhook().convert_public_key_to_ecdsa(json.load(r)["webhooks"]["verification_key"])
    return _key


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/otp":
            email = json.loads(body)["email"]
            SendGridAPIClient("SG.sut-key", host=API_URL).send(Mail(
                from_email="noreply@sut.drill.test", to_emails=email, subject="Your code",
                plain_text_content="123456"))
            self._answer(202)
        elif self.path == "/hooks/sendgrid":
            ok = EventWebhook().verify_signature(body.decode(), self.headers["X-Twilio-Email-Event-Webhook-Signature"],
                                                 self.headers["X-Twilio-Email-Event-Webhook-Timestamp"], public_key())
            if not ok:
                say("webhook signature invalid")
                self._answer(401)
                return
            for ev in json.loads(body):
                say(f"webhook {ev['event']} {ev['email']}")
            self._answer(200)
        else:
            self._answer(404)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["MAILDRILL_SUT_PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: (server.server_close(), sys.exit(0)))
    server.serve_forever()


if __name__ == "__main__":
    main()
