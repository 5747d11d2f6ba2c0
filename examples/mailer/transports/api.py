"""One delivery attempt through an email vendor's official SDK, classified the way the retry policy needs it.

The SDKs are optional dependencies (the `api` extra). Each worker thread builds its own client per vendor
(boto3 sessions and the Resend module state are not shared across threads safely). What the policy flags
change here: the SDK's timeout (set, or left at the SDK's default: sendgrid-python and postmarker have none),
the SDK's own retries (boto3's legacy mode, mailgun's RetryPolicy) and Resend's `Idempotency-Key`.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

from maildrill.examples.mailer.policy import Attempt, Outcome
from maildrill.examples.mailer.queue import Message
from maildrill.examples.mailer.transports import ApiEndpoint

SENDER = "no-reply@mailer.drill.test"
IDEMPOTENT_APIS = frozenset({"resend"})  # vendors with an idempotency key; none is invented for the others


@dataclass(frozen=True)
class SdkOptions:
    timeout_s: float | None  # None = the SDK's default
    sdk_retries: bool  # leave the SDK's own retries on (its default) or turn them off
    idempotency_key: bool  # send one where the vendor honours it (Resend)


@dataclass(frozen=True)
class ApiAttempt(Attempt):
    vendor_id: str | None = None  # the vendor's message id (for webhooks)
    retry_after_s: float | None = None  # from Retry-After / X-RateLimit-Reset / ratelimit-reset


def _subject(message: Message) -> str:
    from maildrill.examples.mailer.delivery import _SUBJECTS

    return _SUBJECTS[message.kind]


def _body(message: Message) -> str:
    if message.kind.value == "newsletter":
        return "Hello,\n\nHere is what happened this month.\n"
    return f"Your code is {message.code}. It expires in 5 minutes.\n"


def _after(value: str | None, *, epoch: bool) -> float | None:
    if not value:
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return max(0.0, n - time.time()) if epoch else max(0.0, n)


def _network(exc: BaseException, stage: str = "API") -> Attempt:
    """A transport failure: refused before anything was sent, timed out, or closed after the request (unknown)."""
    text = f"{type(exc).__name__}: {exc}"[:300]
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = (
            getattr(cur, "reason", None)
            if isinstance(cur, urllib.error.URLError)
            else (cur.__cause__ or cur.__context__)
        )
    names = " ".join(type(e).__name__ for e in chain) + " " + text
    if (
        any(isinstance(e, ConnectionRefusedError) for e in chain)
        or "EndpointConnectionError" in names
        or ("NewConnectionError" in names or "Connection refused" in names)
    ):
        return Attempt(Outcome.REFUSED, 0, text, stage)
    if any(isinstance(e, (socket.timeout, TimeoutError)) for e in chain) or "Timeout" in names or "timed out" in names:
        return Attempt(Outcome.TIMEOUT, 0, text, stage)
    if (
        any(
            isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead))
            for e in chain
        )
        or "ConnectionClosedError" in names
        or "RemoteDisconnected" in names
        or "Remote end closed" in names
        or "Connection aborted" in names
        or "reset by peer" in names
    ):
        return Attempt(Outcome.UNKNOWN, 0, text, stage)
    return Attempt(Outcome.CONN_ERROR, 0, text, stage)


def _status(status: int, text: str, retry_after: float | None) -> ApiAttempt:
    if 200 <= status < 300:
        return ApiAttempt(Outcome.SENT, status, text, "API")
    outcome = Outcome.TEMPFAIL if status in (408, 429) or status >= 500 else Outcome.PERMFAIL
    return ApiAttempt(outcome, status, text[:300], "API", retry_after_s=retry_after)


class ApiClients:
    """Per-thread SDK clients for the mailer's API vendors, and the one `send` the workers call."""

    def __init__(self, options: SdkOptions) -> None:
        self.options = options
        self._local = threading.local()

    def _client(self, endpoint: ApiEndpoint) -> Any:
        cache = self._local.__dict__.setdefault("clients", {})
        client = cache.get(endpoint.name)
        if client is None:
            client = cache[endpoint.name] = getattr(self, f"_make_{endpoint.api}")(endpoint)
        return client

    def warm(self, endpoints: list[ApiEndpoint]) -> None:
        """Build this thread's clients now (boto3 loads its service model on first use: seconds on a busy host)."""
        for ep in endpoints:
            self._client(ep)

    # --- clients -------------------------------------------------------------------------------
    def _make_sendgrid(self, ep: ApiEndpoint) -> Any:
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(api_key="SG.maildrill-mailer", host=ep.url)
        if self.options.timeout_s is not None:
            client.client.timeout = self.options.timeout_s  # the SDK's default is none (urllib, wait forever)
        return client

    def _make_ses(self, ep: ApiEndpoint) -> Any:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {}
        if self.options.timeout_s is not None:
            kwargs.update(connect_timeout=self.options.timeout_s, read_timeout=self.options.timeout_s)
        if not self.options.sdk_retries:
            kwargs["retries"] = {"total_max_attempts": 1}  # one attempt: the mailer's policy decides on retries
        session = boto3.session.Session()
        return session.client(
            "sesv2",
            endpoint_url=ep.url,
            region_name="us-east-1",
            aws_access_key_id="AKIDMAILER",
            aws_secret_access_key="maildrill-mailer",
            config=Config(**kwargs),
        )

    def _make_postmark(self, ep: ApiEndpoint) -> Any:
        from postmarker.core import PostmarkClient

        return PostmarkClient(server_token="pm-maildrill-mailer", root_api_url=ep.url, timeout=self.options.timeout_s)

    def _make_mailgun(self, ep: ApiEndpoint) -> Any:
        from mailgun.client import Client
        from mailgun.config import RetryPolicy

        kwargs: dict[str, Any] = {}
        if self.options.timeout_s is not None:
            kwargs["timeout"] = (self.options.timeout_s, self.options.timeout_s)
        if not self.options.sdk_retries:
            kwargs["retry_policy"] = RetryPolicy(max_retries=0)
        return Client(auth=("api", "mg-maildrill-mailer"), api_url=ep.url, **kwargs)

    def _make_resend(self, ep: ApiEndpoint) -> Any:
        import resend
        from resend.http_client_requests import RequestsClient

        # The Resend SDK keeps its settings in module state: one URL per process (the mailer's only Resend vendor).
        resend.api_key, resend.api_url = "re_maildrill_mailer", ep.url
        if self.options.timeout_s is not None:
            resend.default_http_client = RequestsClient(timeout=self.options.timeout_s)  # type: ignore[arg-type]
        return resend

    # --- send ----------------------------------------------------------------------------------
    def send(self, endpoint: ApiEndpoint, message: Message) -> ApiAttempt | Attempt:
        """Send `message` once through the vendor's SDK (which may retry by itself); never raises for vendor trouble."""
        client = self._client(endpoint)
        try:
            return getattr(self, f"_send_{endpoint.api}")(client, message)
        except Exception as exc:  # each SDK's own error types are mapped in its _send_; the rest is the network
            return _network(exc)

    def _send_sendgrid(self, client: Any, message: Message) -> Attempt:
        from python_http_client.exceptions import HTTPError
        from sendgrid.helpers.mail import Mail

        mail = Mail(
            from_email=SENDER, to_emails=message.email, subject=_subject(message), plain_text_content=_body(message)
        )
        try:
            response = client.send(mail)
        except HTTPError as exc:
            headers = exc.headers or {}
            after = _after(headers.get("Retry-After"), epoch=False)
            if after is None:
                after = _after(headers.get("X-RateLimit-Reset"), epoch=True)
            body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
            return _status(exc.status_code, body, after)
        return ApiAttempt(
            Outcome.SENT, response.status_code, "accepted", "API", vendor_id=response.headers.get("X-Message-Id")
        )

    def _send_ses(self, client: Any, message: Message) -> Attempt:
        from botocore.exceptions import ClientError

        try:
            out = client.send_email(
                FromEmailAddress=SENDER,
                Destination={"ToAddresses": [message.email]},
                Content={
                    "Simple": {"Subject": {"Data": _subject(message)}, "Body": {"Text": {"Data": _body(message)}}}
                },
            )
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            code = exc.response.get("Error", {}).get("Code", "")
            status = int(meta.get("HTTPStatusCode") or 400)
            retryable = code in ("TooManyRequestsException", "Throttling", "LimitExceededException")
            after = _after((meta.get("HTTPHeaders") or {}).get("retry-after"), epoch=False)
            return _status(429 if retryable and status < 500 else status, f"{code}: {exc}", after)
        return ApiAttempt(Outcome.SENT, 200, "accepted", "API", vendor_id=out.get("MessageId"))

    def _send_postmark(self, client: Any, message: Message) -> Attempt:
        import requests
        from postmarker.exceptions import ClientError

        try:
            out = client.emails.send(From=SENDER, To=message.email, Subject=_subject(message), TextBody=_body(message))
        except ClientError as exc:  # postmarker raises it from the requests.HTTPError of a 4xx/5xx
            resp = getattr(exc.__cause__, "response", None)
            status = resp.status_code if resp is not None else 422
            return _status(status, str(exc), _after(resp.headers.get("Retry-After"), epoch=False) if resp else None)
        except requests.HTTPError as exc:
            resp = exc.response
            status = resp.status_code if resp is not None else 500
            return _status(
                status, str(exc), _after(resp.headers.get("Retry-After") if resp is not None else None, epoch=False)
            )
        return ApiAttempt(Outcome.SENT, 200, "accepted", "API", vendor_id=out.get("MessageID"))

    def _send_mailgun(self, client: Any, message: Message) -> Attempt:
        resp = client.messages.create(
            data={"from": SENDER, "to": message.email, "subject": _subject(message), "text": _body(message)},
            domain="mailer.drill.test",
        )
        if 200 <= resp.status_code < 300:
            return ApiAttempt(Outcome.SENT, resp.status_code, "accepted", "API", vendor_id=resp.json().get("id"))
        return _status(resp.status_code, resp.text, _after(resp.headers.get("Retry-After"), epoch=False))

    def _send_resend(self, client: Any, message: Message) -> Attempt:
        options = {"idempotency_key": message.message_id.strip("<>")} if self.options.idempotency_key else None
        try:
            out = client.Emails.send(
                {"from": SENDER, "to": [message.email], "subject": _subject(message), "text": _body(message)}, options
            )
        except client.exceptions.ResendError as exc:
            if getattr(exc, "error_type", "") == "HttpClientError":  # the SDK's wrapper of a network failure
                return _network(exc.__cause__ or exc.__context__ or exc)
            code = str(getattr(exc, "code", ""))
            headers = getattr(exc, "headers", None) or {}
            after = _after(headers.get("retry-after"), epoch=False)
            return _status(int(code) if code.isdigit() else 500, str(exc), after)
        return ApiAttempt(Outcome.SENT, 200, "accepted", "API", vendor_id=out.get("id"))
