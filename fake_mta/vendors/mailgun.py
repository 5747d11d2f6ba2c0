"""Mailgun: ``POST /v3/{domain}/messages``, multipart/form-data (or form-urlencoded), basic auth user ``api``.

Success is ``200 {"id": "<…@domain>", "message": "Queued. Thank you."}``; errors are JSON ``{"message"}``: 400 for a
bad request or an invalid recipient, 401 ``Forbidden`` for a missing or wrong key, 413 over 25 MB, 429 (with a
numeric ``Retry-After``, which mailgun-python honours), 500 / 503.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import math
import time
from urllib.parse import parse_qs

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
    dumps,
)


def _split(values: list[str]) -> list[str]:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part:
                out.append(part.rsplit("<", 1)[-1].rstrip(">").strip())
    return out


class Mailgun(Wire):
    api = "mailgun"
    max_body = 25 * 1024 * 1024
    max_rcpts = 1000
    endpoints = {("POST", r"/v3/[^/]+/messages"): "send"}

    def api_key(self, request: web.BaseRequest) -> str | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, key = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return key if user == "api" and key else None

    def _fields(self, request: web.BaseRequest, body: bytes) -> dict[str, list[str]]:
        ctype = request.content_type
        if ctype == "application/x-www-form-urlencoded":
            try:
                return parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except (UnicodeDecodeError, ValueError):
                raise WireError(self.error(400, "bad_request", "the form body is not valid")) from None
        if ctype != "multipart/form-data":
            raise WireError(self.error(400, "content_type", "Content-Type must be multipart/form-data or "
                                       f"application/x-www-form-urlencoded, got {ctype or 'none'}"))
        head = f"Content-Type: {request.headers.get('Content-Type')}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not msg.is_multipart():
            raise WireError(self.error(400, "bad_request", "the multipart body has no parts (a boundary?)"))
        fields: dict[str, list[str]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name or part.get_filename():
                continue  # attachments and inline files
            payload = part.get_payload(decode=True) or b""
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            fields.setdefault(str(name), []).append(text)
        return fields

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        fields = self._fields(request, body)
        sender = _split(fields.get("from", []))
        if not sender:
            raise WireError(self.error(400, "bad_request", "from parameter is missing"))
        rcpts = _split(fields.get("to", []))
        if not rcpts:
            raise WireError(self.error(400, "bad_request", "to parameter is missing"))
        for key in ("to", "cc", "bcc"):
            got = _split(fields.get(key, [])) if key != "to" else rcpts
            bad = [a for a in got if "@" not in a]
            if bad:
                raise WireError(self.error(400, "bad_request", f"{key} parameter is not a valid address. please "
                                           "check documentation"))
            if key != "to":
                rcpts = rcpts + got
        if not any(fields.get(k) for k in ("text", "html", "amp-html", "template")):
            raise WireError(self.error(400, "bad_request", "Need at least one of 'text', 'html', 'amp-html' or "
                                       "'template' parameters specified"))
        self._domain = request.path.split("/")[2]
        return Mail([Message(sender[0], rcpts)])

    def message_id(self, n: int) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return f"<{stamp}.{self.ids.getrandbits(48):012x}@{getattr(self, '_domain', 'mg.drill.test')}>"

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        return Answer(200, dumps({"id": ids[0], "message": "Queued. Thank you."}), "application/json", {},
                      CODE_ACCEPTED, None, "Queued. Thank you.")

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None) -> Answer:
        code = CODE_REFUSED
        headers: dict[str, str] = {"Allow": allow} if allow else {}
        if kind == "throttle":
            status, code, message = 429, CODE_THROTTLED, "Too many requests"
            if limit is not None:
                headers["Retry-After"] = str(max(1, math.ceil(limit.reset_s)))
        elif kind.startswith("reject_"):
            reason = kind.removeprefix("reject_")
            if reason in ("unknown_user", "policy"):
                status, code = 400, CODE_REJECTED
                message = (f"to parameter is not a valid address ({rcpt}). please check documentation"
                           if reason == "unknown_user" else f"{rcpt} is on the suppression list (bounces)")
            elif reason == "blocked":
                status, message = 403, "Domain is disabled"
            else:
                status, message = 401, "Forbidden"
        elif kind == "tempfail":
            code = CODE_TEMPFAIL
            message = "Internal Server Error" if status == 500 else "Service Unavailable"
        elif kind in ("no_key", "bad_key"):
            status, message = 401, "Forbidden"
            return Answer(401, b"Forbidden", "text/plain", headers, code, "Forbidden", message)
        body = dumps({"message": message})
        return Answer(status, body, "application/json", headers, code, str(status), message)
