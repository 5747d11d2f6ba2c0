"""Bad input to the fake vendors: malformed JSON, wrong content types, bodies over the vendors' limits, and 10,000
seeded random HTTP requests over raw sockets — each answered with the vendor's error (or aiohttp's 400), the
vendor keeps serving, and every acceptance it answered is in the events."""

from __future__ import annotations

import http.client
import json
import random
import socket

import pytest
import requests
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread

APIS = ("sendgrid", "ses", "postmark", "mailgun", "resend")
SEND = {"sendgrid": "/v3/mail/send", "ses": "/v2/email/outbound-emails", "postmark": "/email",
        "mailgun": "/v3/mg.drill.test/messages", "resend": "/emails"}
AUTH = {"sendgrid": {"Authorization": "Bearer SG.k"}, "resend": {"Authorization": "Bearer re_k"},
        "postmark": {"X-Postmark-Server-Token": "pm"}, "mailgun": {"Authorization": "Basic YXBpOmtleQ=="},
        "ses": {"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/ses/aws4_request"}}


def good(api: str, to: list[str]) -> tuple[str, bytes]:
    """(content type, body) of a valid send to `to`."""
    if api == "sendgrid":
        body = {"personalizations": [{"to": [{"email": a} for a in to]}], "from": {"email": "app@app.drill.test"},
                "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}
    elif api == "ses":
        body = {"FromEmailAddress": "app@app.drill.test", "Destination": {"ToAddresses": to},
                "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "x"}}}}}
    elif api == "postmark":
        body = {"From": "app@app.drill.test", "To": ",".join(to), "Subject": "s", "TextBody": "x"}
    elif api == "resend":
        body = {"from": "app@app.drill.test", "to": to, "subject": "s", "text": "x"}
    else:
        from urllib.parse import urlencode

        return "application/x-www-form-urlencoded", urlencode(
            [("from", "app@app.drill.test"), *[("to", a) for a in to], ("subject", "s"), ("text", "x")]).encode()
    return "application/json", json.dumps(body).encode()


def fleet() -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name=a, api=a) for a in APIS]), control=False)


def post(f: FleetThread, api: str, body: bytes, ctype: str | None, path: str | None = None) -> requests.Response:
    headers = dict(AUTH[api])
    if ctype:
        headers["Content-Type"] = ctype
    return requests.post(f[api].base_url + (path or SEND[api]), data=body, headers=headers, timeout=30)


def test_malformed_json_and_wrong_content_types_get_each_vendors_error():
    with fleet() as f:
        got = {api: post(f, api, b'{"to": [', "application/json") for api in APIS}
        wrong = {api: post(f, api, good(api, ["u1@users.drill.test"])[1], "text/plain") for api in APIS}
        ok = {api: post(f, api, *reversed(good(api, ["u2@users.drill.test"]))) for api in APIS}
        evs = f.events()
    assert {a: r.status_code for a, r in got.items()} == {"sendgrid": 400, "ses": 400, "postmark": 422,
                                                         "mailgun": 400, "resend": 400}
    assert got["sendgrid"].json()["errors"][0]["message"].startswith("request body is not valid JSON")
    assert got["ses"].headers["x-amzn-ErrorType"] == "BadRequestException"
    assert got["postmark"].json() == {"ErrorCode": 402, "Message": "Received invalid JSON input."}
    assert got["resend"].json()["name"] == "validation_error"
    assert {a: r.status_code for a, r in wrong.items()} == {"sendgrid": 415, "ses": 415, "postmark": 422,
                                                           "mailgun": 400, "resend": 415}
    assert wrong["postmark"].json()["ErrorCode"] == 409
    assert {a: r.status_code for a, r in ok.items()} == {"sendgrid": 202, "ses": 200, "postmark": 200,
                                                        "mailgun": 200, "resend": 200}
    acc = sorted((e["source"], e["corr"]) for e in evs if e["kind"] == "mta.message.accepted")
    assert acc == sorted((f"mta/{a}", "u2") for a in APIS)
    refused = [e for e in evs if e["kind"] == "mta.reply.sent" and e["code"] == 554]
    assert len(refused) == 10 and all(e["corr"] is None or e["corr"] == "u1" for e in refused)


@pytest.mark.parametrize(("api", "n", "status", "fragment"), [
    ("sendgrid", 1001, 400, "The total number of recipients (1001) must be no more than 1000."),
    ("postmark", 51, 422, "you may not have more than 50 recipients (51 given)"),
    ("resend", 51, 400, "too many recipients (51); at most 50"),
    ("ses", 51, 400, "too many recipients (51); at most 50"),
])
def test_more_recipients_than_the_vendor_allows(api: str, n: int, status: int, fragment: str):
    with fleet() as f:
        resp = post(f, api, *reversed(good(api, [f"u{i}@users.drill.test" for i in range(n)])))
        fine = post(f, api, *reversed(good(api, [f"u{i}@users.drill.test" for i in range(n - 1)])))
        evs = f.events(source=f"mta/{api}")
    assert resp.status_code == status
    assert fragment in resp.text
    assert fine.status_code in (200, 202)
    assert sum(e["kind"] == "mta.message.accepted" for e in evs) == n - 1


def test_mailgun_body_over_25_mb_is_413_and_the_vendor_keeps_serving():
    with fleet() as f:
        big = b"x" * (25 * 1024 * 1024 + 1)
        resp = post(f, "mailgun", big, "application/x-www-form-urlencoded")
        fine = post(f, "mailgun", *reversed(good("mailgun", ["u1@users.drill.test"])))
    assert resp.status_code == 413
    assert resp.json() == {"message": "request body of 26214401 bytes is over the 26214400 bytes mailgun accepts"}
    assert fine.status_code == 200


def _random_request(rng: random.Random, api: str, i: int) -> bytes:
    method = rng.choice(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW", "P\x00ST"])
    path = rng.choice([SEND[api]] * 5 + ["/", "/v3/mail/send", "/emails/batch", "/email/batch", "/%zz", "/a" * 300,
                                         "/v3//messages", "*"])
    kind = rng.randrange(8)
    ctype, body = good(api, [f"r{i}@users.drill.test"])
    if kind == 0:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    elif kind == 1:
        body = body[: rng.randrange(len(body))]
    elif kind == 2:
        body = json.dumps(rng.choice([None, 1, "x", [], {}, [1, 2], {"to": 5}, {"personalizations": "x"}])).encode()
    elif kind == 3:
        ctype = rng.choice(["text/plain", "multipart/form-data; boundary=zz", "application/json; charset=latin-9",
                            "", "application/x-www-form-urlencoded"])
    elif kind == 4:
        pos = rng.randrange(len(body))
        body = body[:pos] + bytes([rng.getrandbits(8)]) + body[pos + 1:]
    headers = ["Host: 127.0.0.1"]
    if rng.random() < 0.85:
        headers += [f"{k}: {v}" for k, v in AUTH[api].items()]
    if ctype:
        headers.append(f"Content-Type: {ctype}")
    if kind == 5:
        headers.append(rng.choice(["Content-Length: -1", "Content-Length: abc", "Transfer-Encoding: chunked",
                                   "X-Bad\x01Header: 1", ": empty-name", "Idempotency-Key: " + "k" * 300]))
    else:
        headers.append(f"Content-Length: {len(body)}")
    headers.append("Connection: close")
    version = rng.choice(["HTTP/1.1"] * 9 + ["HTTP/9.9", "HTTP/1.0", "HTP/1.1"])
    return f"{method} {path} {version}\r\n".encode("latin-1") + "\r\n".join(headers).encode("latin-1") + \
        b"\r\n\r\n" + (body if kind != 5 or "chunked" not in headers[-2] else b"0\r\n\r\n")


def test_ten_thousand_random_requests_are_each_answered_and_nothing_recorded_is_lost():
    rng = random.Random(20261201)
    allowed = {200, 202, 400, 401, 403, 404, 405, 409, 413, 415, 422, 431, 501, 505}
    statuses: dict[int, int] = {}
    accepted_answers = 0
    with fleet() as f:
        for i in range(10_000):
            api = APIS[i % len(APIS)]
            sock = socket.create_connection(("127.0.0.1", f[api].port), timeout=30)
            try:
                sock.sendall(_random_request(rng, api, i))
                resp = http.client.HTTPResponse(sock)
                resp.begin()
                resp.read()
            finally:
                sock.close()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            assert resp.status in allowed, (i, api, resp.status)
            accepted_answers += resp.status in (200, 202)
        ok = {api: post(f, api, *reversed(good(api, ["after@users.drill.test"]))).status_code for api in APIS}
        evs = f.events()
    assert ok == {"sendgrid": 202, "ses": 200, "postmark": 200, "mailgun": 200, "resend": 200}
    assert not [s for s in statuses if s >= 500 and s not in (501, 505)]
    replies_250 = [e for e in evs if e["kind"] == "mta.reply.sent" and e["code"] == 250]
    assert len(replies_250) == accepted_answers + len(APIS)
    accepted = [e for e in evs if e["kind"] == "mta.message.accepted"]
    assert len(accepted) == sum(e["rcpt_count"] for e in replies_250)  # every answered acceptance is recorded
    assert 0 < accepted_answers < 10_000 and len(statuses) >= 5, statuses


def test_a_lone_surrogate_in_a_json_body_is_refused_as_invalid_json_and_the_vendor_keeps_recording():
    """`"\\ud800"` is valid JSON to Python's parser but no character: each JSON vendor refuses it with its own
    invalid-JSON error (no vendor could store it), and the next good request is accepted and recorded."""
    json_apis = [a for a in APIS if a != "mailgun"]
    with fleet() as f:
        bad = {api: post(f, api, good(api, ["\ud800@users.drill.test"])[1], good(api, ["x"])[0])
               for api in json_apis}
        ok = {api: post(f, api, *reversed(good(api, ["u3@users.drill.test"]))) for api in json_apis}
        evs = f.events()
    assert {a: r.status_code for a, r in bad.items()} == {"sendgrid": 400, "ses": 400, "postmark": 422,
                                                         "resend": 400}
    why = "it holds a lone UTF-16 surrogate ('\\ud800'), which is no character"
    assert bad["sendgrid"].json()["errors"][0]["message"] == f"request body is not valid JSON: {why}"
    assert bad["ses"].json() == {"message": f"the request body is not valid JSON: {why}"}
    assert bad["postmark"].json() == {"ErrorCode": 402, "Message": "Received invalid JSON input."}
    assert bad["resend"].json()["message"] == f"request body is not valid JSON: {why}"
    assert {a: r.status_code for a, r in ok.items()} == {"sendgrid": 202, "ses": 200, "postmark": 200,
                                                        "resend": 200}
    acc = sorted((e["source"], e["corr"], e["rcpt"]) for e in evs if e["kind"] == "mta.message.accepted")
    assert acc == sorted((f"mta/{a}", "u3", "u3@users.drill.test") for a in json_apis)
