"""Resend: ``POST /emails`` (and ``/emails/batch``) → ``{"id"}``; errors ``{"statusCode", "name", "message"}``.

``Idempotency-Key`` (1-256 characters) is honoured for 24 h: a retry with the same key and body gets the first
response and stores nothing new; the same key with another body is a 409. Rate limits answer 429
``rate_limit_exceeded`` with ``ratelimit-limit``/``-remaining``/``-reset`` and ``retry-after``.
Auth: ``Authorization: Bearer re_…``.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from maildrill.fake_mta.vendors.base import (
    CODE_ACCEPTED,
    CODE_REFUSED,
    CODE_REJECTED,
    CODE_TEMPFAIL,
    CODE_THROTTLED,
    Answer,
    Limit,
    Mail,
    Message,
    Wire,
    WireError,
    bearer,
    dumps,
)

_NAMES = {400: "validation_error", 401: "missing_api_key", 403: "invalid_api_key", 404: "not_found",
          405: "method_not_allowed", 409: "invalid_idempotent_request", 413: "validation_error",
          415: "validation_error", 422: "validation_error", 429: "rate_limit_exceeded", 500: "application_error",
          503: "application_error"}


class Resend(Wire):
    api = "resend"
    max_body = 40 * 1024 * 1024
    max_rcpts = 50
    idempotent = True
    endpoints = {("POST", "/emails"): "send", ("POST", "/emails/batch"): "batch"}

    def api_key(self, request: web.BaseRequest) -> str | None:
        return bearer(request)

    def _message(self, item: Any, where: str) -> Message:
        if not isinstance(item, dict):
            raise WireError(self.error(422, "validation_error", f"{where} must be an object"))
        for key in ("from", "to", "subject"):
            if not item.get(key):
                raise WireError(self.error(422, "missing_required_field", f"Missing `{key}` field."))
        rcpts: list[str] = []
        for key in ("to", "cc", "bcc"):
            value = item.get(key) or []
            for a in [value] if isinstance(value, str) else value if isinstance(value, list) else [None]:
                if not isinstance(a, str) or "@" not in a:
                    raise WireError(self.error(422, "validation_error", f"Invalid `{key}` field. The email address "
                                               "needs to follow the `email@example.com` or "
                                               "`Name <email@example.com>` format."))
                rcpts.append(a.rsplit("<", 1)[-1].rstrip(">").strip())
        sender = item["from"]
        if not isinstance(sender, str):
            raise WireError(self.error(422, "validation_error", "Invalid `from` field."))
        return Message(sender.rsplit("<", 1)[-1].rstrip(">").strip(), rcpts)

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        data = self.json_body(body, request)
        if endpoint == "batch":
            if not isinstance(data, list) or not 1 <= len(data) <= 100:
                raise WireError(self.error(422, "validation_error", "The batch must be a list of 1 to 100 emails."))
            return Mail([self._message(m, f"[{i}]") for i, m in enumerate(data)])
        return Mail([self._message(data, "the body")])

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        body = {"data": [{"id": i} for i in ids]} if endpoint == "batch" else {"id": ids[0]}
        return Answer(200, dumps(body), "application/json", {}, CODE_ACCEPTED, None, "OK")

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None) -> Answer:
        code = CODE_REFUSED
        name = _NAMES.get(status, "application_error")
        headers: dict[str, str] = {"Allow": allow} if allow else {}
        if kind == "throttle":
            status, code = 429, CODE_THROTTLED
            if limit is not None and limit.daily:
                name, message = "daily_quota_exceeded", "You have reached your daily email sending quota."
            else:
                message = "Too many requests. You can only make 2 requests per second. See rate limit response " \
                          "headers for more information."
        elif kind.startswith("reject_"):
            reason = kind.removeprefix("reject_")
            if reason == "auth":
                status, name, message = 403, "invalid_api_key", "API key is invalid"
            elif reason == "blocked":
                status, name, message = 403, "validation_error", "The domain is not verified."
            else:
                status, code, name = 422, CODE_REJECTED, "validation_error"
                message = f"Invalid `to` field: {rcpt} cannot receive email (suppressed or invalid)."
        elif kind == "tempfail":
            code, name = CODE_TEMPFAIL, "application_error"
            message = "An unexpected error occurred." if status == 500 else "Service temporarily unavailable."
        elif kind in ("missing_required_field", "invalid_idempotency_key", "invalid_idempotent_request",
                      "validation_error"):
            name = kind
        elif kind == "no_key":
            name, message = "missing_api_key", "Missing API key in the authorization header."
        elif kind == "bad_key":
            name, message = "invalid_api_key", "API key is invalid"
        body = dumps({"statusCode": status, "name": name, "message": message})
        return Answer(status, body, "application/json", headers, code, name, message)

    def rate_headers(self, limit: Limit | None, answer: Answer) -> None:
        if limit is None:
            return
        answer.headers["ratelimit-limit"] = str(limit.limit)
        answer.headers["ratelimit-remaining"] = str(limit.remaining)
        answer.headers["ratelimit-reset"] = str(math.ceil(limit.reset_s))
        if answer.status == 429:
            answer.headers["retry-after"] = str(max(1, math.ceil(limit.reset_s)))
