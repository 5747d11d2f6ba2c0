"""The real sendgrid SDK (python-http-client) against the fake SendGrid: success, 429, a permanent rejection,
a lost response, and the events each records, compared whole."""

from __future__ import annotations

import http.client
import urllib.error

import pytest
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread, api_events, reply_event
from python_http_client.exceptions import BadRequestsError, TooManyRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

PATH = "/v3/mail/send"


def vendor(*behaviors: dict, auth: str | None = None) -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name="sg", api="sendgrid", behaviors=list(behaviors),
                                                     auth=auth)]), control=False)


def send(fleet: FleetThread, to: str = "u1@users.drill.test", key: str = "SG.test-key"):
    client = SendGridAPIClient(key, host=fleet["sg"].base_url)
    return client.send(Mail(from_email="app@app.drill.test", to_emails=to, subject="Your code",
                            plain_text_content="123456"))


def accepted(corr: str, conn: int, txn: int, rcpt: str, message_id: str, size: int, ack: str = "sent") -> dict:
    return {"kind": "mta.message.accepted", "corr": corr, "conn": conn, "txn": txn, "mail_from": "app@app.drill.test",
            "rcpt": rcpt, "size_bytes": size, "message_id": message_id, "ack": ack}


def opened(conn: int) -> dict:
    return {"kind": "mta.connection.opened", "corr": None, "conn": conn, "peer": "127.0.0.1"}


def closed(conn: int, by: str = "client", reason: str = "client closed the connection") -> dict:
    return {"kind": "mta.connection.closed", "corr": None, "conn": conn, "by": by, "reason": reason}


def test_success_is_202_with_x_message_id_and_rate_headers():
    with vendor() as fleet:
        resp = send(fleet)
        evs = api_events(fleet, "sg", closed=1)
    assert resp.status_code == 202
    assert resp.body == b""
    mid = resp.headers["X-Message-Id"]
    assert len(mid) == 22
    assert (resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"]) == ("600", "600")
    assert int(resp.headers["X-RateLimit-Reset"]) > 1_700_000_000
    size = evs[1]["size_bytes"]
    assert size > 100
    assert evs == [
        opened(1),
        accepted("u1", 1, 1, "u1@users.drill.test", mid, size),
        reply_event("u1", 1, 1, 250, 202, api="sendgrid", path=PATH, api_key="SG.test-key", rcpt="u1@users.drill.test",
                    text="Accepted"),
        closed(1),
    ]


def test_throttle_is_429_too_many_requests_error_with_sendgrid_headers():
    with vendor({"kind": "throttle", "rate_per_s": 0.001, "burst": 1}) as fleet:
        assert send(fleet).status_code == 202
        with pytest.raises(TooManyRequestsError) as info:
            send(fleet, "u2@users.drill.test")
        evs = api_events(fleet, "sg", closed=2)
    err = info.value
    assert err.status_code == 429
    assert err.to_dict == {"errors": [{"message": "too many requests", "field": None, "help": None}]}
    assert (err.headers["X-RateLimit-Limit"], err.headers["X-RateLimit-Remaining"]) == ("1", "0")
    assert evs[4:] == [
        opened(2),
        reply_event("u2", 2, 1, 421, 429, api="sendgrid", path=PATH, api_key="SG.test-key",
                    rcpt="u2@users.drill.test", text="too many requests", behavior="throttle", error_code="throttle"),
        closed(2),
    ]


def test_reject_is_a_400_naming_the_recipient_field():
    with vendor({"kind": "reject", "match_rcpt": "^bad"}) as fleet:
        with pytest.raises(BadRequestsError) as info:
            send(fleet, "bad1@users.drill.test")
        evs = api_events(fleet, "sg", closed=1)
    assert info.value.status_code == 400
    assert info.value.to_dict == {"errors": [{"message": "Does not contain a valid address.",
                                              "field": "personalizations.0.to.0.email", "help": None}]}
    assert evs == [
        opened(1),
        reply_event("bad1", 1, 1, 550, 400, api="sendgrid", path=PATH, api_key="SG.test-key",
                    rcpt="bad1@users.drill.test", text="Does not contain a valid address.", behavior="reject",
                    error_code="reject_unknown_user"),
        closed(1),
    ]


def test_wrong_key_is_401_when_auth_is_fixed():
    with vendor(auth="SG.right") as fleet:
        with pytest.raises(UnauthorizedError) as info:
            send(fleet, key="SG.wrong")
        assert send(fleet, key="SG.right").status_code == 202
    assert info.value.to_dict["errors"][0]["message"] == ("The provided authorization grant is invalid, expired, or "
                                                          "revoked")


def test_lose_response_stores_the_message_and_the_sdk_sees_the_connection_close():
    """sendgrid-python never retries: one acceptance whose response never came (ack lost), no duplicate."""
    with vendor({"kind": "go_dark", "mode": "lose_response"}) as fleet:
        with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
            send(fleet)
        evs = api_events(fleet, "sg", closed=1)
    mid = evs[1]["message_id"]
    assert evs == [
        opened(1),
        accepted("u1", 1, 1, "u1@users.drill.test", mid, evs[1]["size_bytes"], ack="lost"),
        closed(1, "server", "go_dark: message stored, connection closed before the response"),
    ]
