"""SendGrid v3 Mail Send: ``POST /v3/mail/send`` → ``202`` with an empty body and ``X-Message-Id``.

Errors are ``{"errors": [{"field", "message", "help"}]}``; every reply carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds). At most 1000 personalizations and
1000 recipients (to + cc + bcc) per request. Auth: ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import time
from binascii import b2a_base64
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

_URLSAFE = bytes.maketrans(b"+/", b"-_")  # base64's alphabet -> the URL-safe one, as urlsafe_b64encode maps it
UNTHROTTLED = Limit(600, 600, 60.0)  # SendGrid does not publish its limits; replies without a throttle say this
_UNTHROTTLED_LIMIT, _UNTHROTTLED_REMAINING = str(UNTHROTTLED.limit), str(UNTHROTTLED.remaining)


def _addr(item: Any, where: str, wire: SendGrid) -> str:
    email = item.get("email") if isinstance(item, dict) else None
    if isinstance(email, str) and "@" in email:
        return email
    raise WireError(wire.error(400, "bad_request", "Does not contain a valid address.", field=where))


class SendGrid(Wire):
    api = "sendgrid"
    max_body = 30 * 1024 * 1024
    max_rcpts = 1000
    endpoints = {("POST", "/v3/mail/send"): "send"}

    def api_key(self, request: web.BaseRequest) -> str | None:
        return bearer(request)

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        data = self.json_body(body, request)
        if not isinstance(data, dict):
            raise WireError(self.error(400, "bad_request", "The request body must be a JSON object.", field=None))
        pers = data.get("personalizations")
        if not isinstance(pers, list) or not pers:
            raise WireError(self.error(400, "bad_request", "The personalizations field is required and must have at "
                                       "least one personalization.", field="personalizations"))
        if len(pers) > 1000:
            raise WireError(self.error(400, "bad_request", "The personalizations field must have no more than 1000 "
                                       "personalizations.", field="personalizations"))
        sender = data.get("from")
        sender_s = _addr(sender, "from.email", self)
        if len(pers) == 1 and (data.get("content") or data.get("template_id")):  # the usual request: one message
            p = pers[0]
            to = p.get("to") if p.__class__ is dict else None
            if to.__class__ is list and len(to) == 1 and not p.get("cc") and not p.get("bcc"):  # one recipient
                a = to[0]
                e = a.get("email") if a.__class__ is dict else None
                if e.__class__ is str and "@" in e:
                    return Mail([Message(sender_s, [e])])
        msgs = []
        for i, p in enumerate(pers):
            if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
                raise WireError(self.error(400, "bad_request", "The to array is required for all personalization "
                                           "objects, and must have at least one email object with a valid email "
                                           "address.", field=f"personalizations.{i}.to"))
            rcpts = []
            for k in ("to", "cc", "bcc"):
                for j, a in enumerate(p.get(k) or ()):
                    e = a.get("email") if isinstance(a, dict) else None
                    if e.__class__ is not str or "@" not in e:  # the field named only for an error
                        e = _addr(a, f"personalizations.{i}.{k}.{j}.email", self)
                    rcpts.append(e)
            msgs.append(Message(sender_s, rcpts))
        total = sum(len(m.rcpts) for m in msgs)
        if total > 1000:
            raise WireError(self.error(400, "bad_request", f"The total number of recipients ({total}) must be no "
                                       "more than 1000.", field="personalizations"))
        if not data.get("content") and not data.get("template_id"):
            raise WireError(self.error(400, "bad_request", "Unless a valid template_id is provided, the content "
                                       "parameter is required.", field="content"))
        return Mail(msgs)

    def too_many(self, mail: Mail) -> Answer | None:
        return None  # checked in parse, in SendGrid's words

    def message_id(self, n: int) -> str:
        # base64.urlsafe_b64encode's bytes, without its two Python-level calls
        raw = self.ids.getrandbits(128).to_bytes(16, "big")
        return b2a_base64(raw, newline=False).translate(_URLSAFE)[:22].decode()

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        # one X-Message-Id per request; events name each personalization's message by it (and its index)
        return Answer(202, b"", None, {"X-Message-Id": ids[0]}, CODE_ACCEPTED, None, "Accepted")

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None, field: str | None = None) -> Answer:
        code, error_code = CODE_REFUSED, kind
        if kind == "throttle":
            status, code, message, field = 429, CODE_THROTTLED, "too many requests", None
        elif kind.startswith("reject_"):
            reason = kind.removeprefix("reject_")
            if reason == "auth":
                status, message = 401, "The provided authorization grant is invalid, expired, or revoked"
            elif reason == "blocked":
                status, message = 403, "You are not authorized to send from that email address"
            else:
                status, code = 400, CODE_REJECTED
                message = ("Does not contain a valid address." if reason == "unknown_user"
                           else f"The recipient {rcpt} is on a suppression list.")
                field = "personalizations.0.to.0.email"
        elif kind == "tempfail":
            code = CODE_TEMPFAIL
            message = "Internal server error" if status == 500 else "Service unavailable"
        elif kind == "no_key":
            message = "authorization required"
        elif kind == "bad_key":
            status, message = 401, "The provided authorization grant is invalid, expired, or revoked"
        elif kind == "too_large":
            status = 413
        headers = {"Allow": allow} if allow else {}
        body = dumps({"errors": [{"message": message, "field": field, "help": None}]})
        return Answer(status, body, "application/json", headers, code, error_code if status != 202 else None, message)

    _unthrottled_reset = (-1, "")  # (the epoch second, X-RateLimit-Reset for UNTHROTTLED then): one str a second

    def rate_headers(self, limit: Limit | None, answer: Answer) -> None:
        if limit is None:  # no throttle: the same three values all second long
            now = int(time.time())
            if self._unthrottled_reset[0] != now:
                self._unthrottled_reset = (now, str(now + int(UNTHROTTLED.reset_s) + 1))
            headers = answer.headers
            headers["X-RateLimit-Limit"] = _UNTHROTTLED_LIMIT
            headers["X-RateLimit-Remaining"] = _UNTHROTTLED_REMAINING
            headers["X-RateLimit-Reset"] = self._unthrottled_reset[1]
            return
        answer.headers["X-RateLimit-Limit"] = str(limit.limit)
        answer.headers["X-RateLimit-Remaining"] = str(limit.remaining)
        answer.headers["X-RateLimit-Reset"] = str(int(time.time() + limit.reset_s) + (1 if limit.reset_s else 0))
