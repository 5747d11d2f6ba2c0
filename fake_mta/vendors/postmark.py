"""Postmark: ``POST /email`` (and ``/email/batch``) with ``X-Postmark-Server-Token``.

Success is ``200 {"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}``; refusals are 422 with a
Postmark ``ErrorCode``: 300 invalid email request (an invalid recipient, more than 50 recipients), 402 invalid
JSON, 406 inactive (suppressed) recipient, 409 JSON required; 401 (ErrorCode 10) for a missing or wrong token,
429 rate limit, 500 / 503. The batch endpoint answers one result per message.
"""

from __future__ import annotations

import datetime as dt
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
    content_type,
    dumps,
    parse_json,
)


def _addresses(value: Any) -> list[str] | None:
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        return None
    out = []
    for part in value.split(","):
        addr = part.rsplit("<", 1)[-1].rstrip("> ").strip()
        if "@" not in addr:
            return None
        out.append(addr)
    return out


class Postmark(Wire):
    api = "postmark"
    max_body = 10 * 1024 * 1024
    max_rcpts = 50
    endpoints = {("POST", "/email"): "send", ("POST", "/email/batch"): "batch"}
    per_message = frozenset({"batch"})  # an inactive recipient fails its own message; the batch answers 200

    def api_key(self, request: web.BaseRequest) -> str | None:
        return request.headers.get("X-Postmark-Server-Token") or None

    def _message(self, item: Any) -> Message:
        if not isinstance(item, dict):
            raise WireError(self.error(422, "300", "Invalid email request: a message must be a JSON object."))
        rcpts: list[str] = []
        for key in ("To", "Cc", "Bcc"):
            got = _addresses(item.get(key))
            if got is None:
                raise WireError(self.error(422, "300", f"Error parsing '{key}': Illegal email address "
                                           f"'{item.get(key)}'. It must contain the '@' symbol."))
            rcpts += got
        if not rcpts:
            raise WireError(self.error(422, "300", "Zero recipients specified"))
        if len(rcpts) > self.max_rcpts:
            raise WireError(self.error(422, "300", f"Invalid 'To' address: you may not have more than "
                                       f"{self.max_rcpts} recipients ({len(rcpts)} given)."))
        sender = _addresses(item.get("From"))
        if not sender:
            raise WireError(self.error(422, "300", "Invalid 'From' address."))
        if not any(item.get(k) for k in ("TextBody", "HtmlBody")):
            raise WireError(self.error(422, "300", "Provide either email TextBody or HtmlBody or both."))
        return Message(sender[0], rcpts)

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        if content_type(request) != "application/json":
            raise WireError(self.error(422, "409", "JSON data required: send Content-Type: application/json."))
        try:
            data = parse_json(body)
        except (ValueError, UnicodeDecodeError):
            raise WireError(self.error(422, "402", "Received invalid JSON input.")) from None
        if endpoint == "batch":
            if not isinstance(data, list) or not 1 <= len(data) <= 500:
                raise WireError(self.error(422, "410", "Too many batch messages: send 1 to 500 in a JSON list."))
            return Mail([self._message(m) for m in data])
        return Mail([self._message(data)])

    def too_many(self, mail: Mail) -> Answer | None:
        return None  # checked per message in parse, in Postmark's words

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        results = [{"To": ", ".join(m.rcpts), "SubmittedAt": now, "MessageID": i, "ErrorCode": 0, "Message": "OK"}
                   for m, i in zip(mail.messages, ids, strict=True)]
        return Answer(200, dumps(results if endpoint == "batch" else results[0]), "application/json", {},
                      CODE_ACCEPTED, None, "OK")

    def batch(self, endpoint: str, mail: Mail, ids: list[str | None], refusals: list[Answer | None]) -> Answer:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        results: list[dict[str, Any]] = []
        for m, i, refusal in zip(mail.messages, ids, refusals, strict=True):
            if refusal is None:
                results.append({"To": ", ".join(m.rcpts), "SubmittedAt": now, "MessageID": i, "ErrorCode": 0,
                                "Message": "OK"})
            else:  # as Postmark words a refused message of a batch: its error, no id
                assert refusal.error_code is not None
                results.append({"ErrorCode": int(refusal.error_code), "Message": refusal.text})
        accepted = refusals.count(None)
        return Answer(200, dumps(results), "application/json", {}, CODE_ACCEPTED if accepted else CODE_REJECTED,
                      None, f"OK: {accepted} of {len(results)} messages accepted")

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None) -> Answer:
        code = CODE_REFUSED
        headers: dict[str, str] = {"Allow": allow} if allow else {}
        error_code: int = int(kind) if kind.isdigit() else 300
        if kind == "throttle":
            status, code, error_code, message = 429, CODE_THROTTLED, 429, "Rate limit exceeded."
        elif kind.startswith("reject_"):
            reason = kind.removeprefix("reject_")
            status = 422
            if reason == "policy":
                code, error_code = CODE_REJECTED, 406
                message = (f"You tried to send to recipient(s) that have been marked as inactive. Found inactive "
                           f"addresses: {rcpt}. Inactive recipients are ones that have generated a hard bounce, "
                           "a spam complaint, or a manual suppression.")
            elif reason == "unknown_user":
                code, error_code = CODE_REJECTED, 300
                message = f"Invalid 'To' address: '{rcpt}'."
            elif reason == "blocked":
                error_code, message = 405, "Not allowed to send: this account may not send."
            else:
                status, error_code, message = 401, 10, "Request does not contain a valid Server token."
        elif kind == "tempfail":
            code = CODE_TEMPFAIL
            error_code = 100 if status == 503 else 500
            message = "Internal server error." if status == 500 else "Maintenance: the service is unavailable."
        elif kind == "no_key":
            status, error_code = 401, 10
            message = ("No Account or Server API tokens were supplied in the HTTP headers. Please add a header for "
                       "either X-Postmark-Server-Token or X-Postmark-Account-Token.")
        elif kind == "bad_key":
            status, error_code, message = 401, 10, "Request does not contain a valid Server token."
        elif kind in ("not_found", "method", "too_large"):
            error_code = status
        body = dumps({"ErrorCode": error_code, "Message": message})
        return Answer(status, body, "application/json", headers, code, str(error_code), message)
