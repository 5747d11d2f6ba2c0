"""Amazon SES: v2 ``POST /v2/email/outbound-emails`` (rest-json) and v1 ``POST /`` Query ``Action=SendEmail`` /
``SendRawEmail`` (form-encoded in, XML out).

v2 errors name their type in ``x-amzn-ErrorType`` with a JSON ``{"message"}`` body (botocore reads both):
``TooManyRequestsException`` 429 (rate), ``LimitExceededException`` 400 (daily quota), ``MessageRejected``,
``AccountSuspendedException``, ``SendingPausedException``, ``BadRequestException`` 400. v1 errors are an XML
``ErrorResponse``; throttling there is HTTP 400 ``Throttling`` "Maximum sending rate exceeded." (or "Daily message
quota exceeded."). An ``Authorization`` header is required; its SigV4 signature is not checked, and the access
key id in its ``Credential=`` is the request's API key.
"""

from __future__ import annotations

import base64
import contextvars
import email.parser
import email.policy
import email.utils
import re
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

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

XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)")
_ENDPOINT: contextvars.ContextVar[str] = contextvars.ContextVar("ses_endpoint", default="v2")
_ACTION: contextvars.ContextVar[str] = contextvars.ContextVar("ses_action", default="SendEmail")
_V1_ACTIONS = ("SendEmail", "SendRawEmail")


class SES(Wire):
    api = "ses"
    max_body = 40 * 1024 * 1024
    max_rcpts = 50
    endpoints = {("POST", "/v2/email/outbound-emails"): "v2", ("POST", "/"): "v1"}

    def route(self, method: str, path: str) -> str:
        _ENDPOINT.set("v1" if path == "/" else "v2")
        return super().route(method, path)

    def api_key(self, request: web.BaseRequest) -> str | None:
        auth = request.headers.get("Authorization")
        if not auth:
            return None
        m = _CREDENTIAL.search(auth)
        return m.group(1) if m else auth.split(" ", 1)[-1][:64]

    def parse(self, endpoint: str, request: web.BaseRequest, body: bytes) -> Mail:
        return self._v1(request, body) if endpoint == "v1" else self._v2(request, body)

    def _v2(self, request: web.BaseRequest, body: bytes) -> Mail:
        if content_type(request) not in ("application/json", "application/x-amz-json-1.1", ""):
            raise WireError(self.error(415, "content_type", f"Unsupported Content-Type {request.content_type}"))
        try:
            data = parse_json(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError(self.error(400, "bad_request", f"the request body is not valid JSON: {exc}")) from None
        if not isinstance(data, dict):
            raise WireError(self.error(400, "bad_request", "the request body must be a JSON object"))
        content = data.get("Content")
        if not isinstance(content, dict) or not any(k in content for k in ("Simple", "Raw", "Template")):
            raise WireError(self.error(400, "bad_request", "Content must contain Simple, Raw or Template"))
        dest = data.get("Destination") or {}
        rcpts: list[str] = []
        if isinstance(dest, dict):
            for key in ("ToAddresses", "CcAddresses", "BccAddresses"):
                value = dest.get(key) or []
                if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                    raise WireError(self.error(400, "bad_request", f"Destination.{key} must be a list of strings"))
                rcpts += value
        sender = data.get("FromEmailAddress")
        if "Raw" in content:
            raw = content["Raw"].get("Data") if isinstance(content["Raw"], dict) else None
            try:
                msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(base64.b64decode(raw or ""))
            except (ValueError, TypeError):
                raise WireError(self.error(400, "bad_request", "Content.Raw.Data is not base64")) from None
            if not rcpts:
                rcpts = [a for _, a in email.utils.getaddresses([str(v) for k in ("to", "cc") for v in
                                                                  msg.get_all(k, [])])]
            sender = sender or (email.utils.parseaddr(str(msg.get("from", "")))[1] or None)
        elif not isinstance(sender, str) or "@" not in sender:
            raise WireError(self.error(400, "bad_request", "FromEmailAddress is required"))
        if not rcpts:
            raise WireError(self.error(400, "bad_request", "Missing final '@domain'"))
        return Mail([Message(sender, [r for r in rcpts if isinstance(r, str)])])

    def _v1(self, request: web.BaseRequest, body: bytes) -> Mail:
        if content_type(request) != "application/x-www-form-urlencoded":
            raise WireError(self.error(400, "InvalidParameterValue",
                                       f"Content-Type must be application/x-www-form-urlencoded, "
                                       f"got {request.content_type or 'none'}"))
        try:
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        except (UnicodeDecodeError, ValueError):
            raise WireError(self.error(400, "InvalidParameterValue", "the request body is not form-encoded")) from None
        action = form.get("Action")
        if action not in _V1_ACTIONS:
            raise WireError(self.error(400, "InvalidAction", f"The action {action or '(none)'} is not valid for "
                                       "this web service."))
        _ACTION.set(action)
        rcpts = [v for k, v in sorted(form.items(), key=lambda kv: _member_order(kv[0]))
                 if re.fullmatch(r"(Destination\.(To|Cc|Bcc)Addresses|Destinations)\.member\.\d+", k)]
        sender = form.get("Source")
        if action == "SendRawEmail":
            try:
                raw = base64.b64decode(form.get("RawMessage.Data", ""), validate=True)
            except ValueError:
                raise WireError(self.error(400, "InvalidParameterValue", "RawMessage.Data is not base64")) from None
            msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
            if not rcpts:
                rcpts = [a for _, a in email.utils.getaddresses([str(v) for k in ("to", "cc") for v in
                                                                  msg.get_all(k, [])])]
            sender = sender or (email.utils.parseaddr(str(msg.get("from", "")))[1] or None)
        elif not sender:
            raise WireError(self.error(400, "MessageRejected", "Missing required header 'From'."))
        if not rcpts:
            raise WireError(self.error(400, "InvalidParameterValue", "Missing final '@domain'"))
        return Mail([Message(sender, rcpts)])

    def message_id(self, n: int) -> str:
        b = f"{self.ids.getrandbits(128):032x}"
        return f"0100018c{b[:8]}-{b[8:16]}-{b[16:20]}-{b[20:24]}-{b[24:32]}{b[:4]}-000000"

    def _request_id(self) -> str:
        b = f"{self.ids.getrandbits(128):032x}"
        return f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:]}"

    def success(self, endpoint: str, mail: Mail, ids: list[str]) -> Answer:
        rid = self._request_id()
        if endpoint == "v1":
            action = _ACTION.get()
            body = (f'<{action}Response xmlns="{XMLNS}">\n  <{action}Result>\n    <MessageId>{ids[0]}</MessageId>\n'
                    f"  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n"
                    f"  </ResponseMetadata>\n</{action}Response>\n").encode()
            return Answer(200, body, "text/xml", {"x-amzn-RequestId": rid}, CODE_ACCEPTED, None, "OK")
        return Answer(200, dumps({"MessageId": ids[0]}), "application/json", {"x-amzn-RequestId": rid},
                      CODE_ACCEPTED, None, "OK")

    def error(self, status: int, kind: str, message: str, *, limit: Limit | None = None, rcpt: str | None = None,
              allow: str | None = None) -> Answer:
        v1 = _ENDPOINT.get() == "v1"
        code = CODE_REFUSED
        headers: dict[str, str] = {"Allow": allow} if allow else {}
        if kind == "throttle":
            daily = limit is not None and limit.daily
            code = CODE_THROTTLED
            message = "Daily message quota exceeded." if daily else "Maximum sending rate exceeded."
            if v1:
                status, name = 400, "Throttling"
            else:
                status, name = (400, "LimitExceededException") if daily else (429, "TooManyRequestsException")
        elif kind.startswith("reject_"):
            reason = kind.removeprefix("reject_")
            status = 400
            if reason == "blocked":
                name, message = ("AccountSendingPausedException" if v1 else "SendingPausedException",
                                 "Sending is paused for this account.")
            elif reason == "auth":
                status, name = 403, "InvalidClientTokenId" if v1 else "UnrecognizedClientException"
                message = "The security token included in the request is invalid."
            else:
                code, name = CODE_REJECTED, "MessageRejected"
                message = (f"Email address is not verified. The following identities failed the check: {rcpt}"
                           if reason == "unknown_user" else f"Address blacklisted: {rcpt}")
        elif kind == "tempfail":
            code = CODE_TEMPFAIL
            name = "InternalFailure" if status == 500 else "ServiceUnavailable"
            message = ("The request processing has failed because of an unknown error, exception or failure."
                       if status == 500 else "Service is unable to handle request.")
        elif kind == "no_key":
            status, name = 403, "MissingAuthenticationTokenException" if not v1 else "MissingAuthenticationToken"
            message = "Missing Authentication Token"
        elif kind == "bad_key":
            status, name = 403, "InvalidClientTokenId" if v1 else "UnrecognizedClientException"
            message = "The security token included in the request is invalid."
        elif kind == "not_found":
            name = "UnknownOperationException"
        elif kind == "too_large":
            name = "RequestEntityTooLarge"
        elif kind in ("InvalidAction", "InvalidParameterValue", "MessageRejected"):
            name = kind
        else:
            name = "BadRequestException" if not v1 else "InvalidParameterValue"
            status = status if status in (405, 415) else 400
        rid = self._request_id()
        headers["x-amzn-RequestId"] = rid
        if v1:
            kind_xml = "Receiver" if status >= 500 else "Sender"
            body = (f'<ErrorResponse xmlns="{XMLNS}">\n  <Error>\n    <Type>{kind_xml}</Type>\n'
                    f"    <Code>{name}</Code>\n    <Message>{escape(message)}</Message>\n  </Error>\n"
                    f"  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n").encode()
            return Answer(status, body, "text/xml", headers, code, name, message)
        headers["x-amzn-ErrorType"] = name
        return Answer(status, dumps({"message": message}), "application/json", headers, code, name, message)


def _member_order(key: str) -> tuple[str, int]:
    head, _, n = key.rpartition(".")
    return (head, int(n)) if n.isdigit() else (key, 0)
