"""boto3's sesv2 and ses (v1 Query) clients against the fake SES: success, throttling as botocore surfaces it,
MessageRejected, and lose_response — which boto3's default retries turn into duplicate acceptances."""

from __future__ import annotations

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread, api_events, reply_event
from maildrill.harness.analysis.core import analyze
from maildrill.harness.events import Event

V2 = "/v2/email/outbound-emails"
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1})


def vendor(*behaviors: dict) -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name="ses", api="ses", behaviors=list(behaviors))]),
                       control=False)


def client(fleet: FleetThread, service: str = "sesv2", config: botocore.config.Config | None = None):
    return boto3.client(service, endpoint_url=fleet["ses"].base_url, region_name="us-east-1",
                        aws_access_key_id="AKIDDRILL", aws_secret_access_key="secret", config=config)


def send_v2(c, to: str = "u1@users.drill.test") -> dict:
    return c.send_email(FromEmailAddress="app@app.drill.test", Destination={"ToAddresses": [to]},
                        Content={"Simple": {"Subject": {"Data": "Your code"}, "Body": {"Text": {"Data": "123456"}}}})


def send_v1(c, to: str = "u1@users.drill.test") -> dict:
    return c.send_email(Source="app@app.drill.test", Destination={"ToAddresses": [to]},
                        Message={"Subject": {"Data": "Your code"}, "Body": {"Text": {"Data": "123456"}}})


def accepted(corr: str, conn: int, rcpt: str, message_id: str, size: int, ack: str = "sent", txn: int = 1) -> dict:
    return {"kind": "mta.message.accepted", "corr": corr, "conn": conn, "txn": txn, "mail_from": "app@app.drill.test",
            "rcpt": rcpt, "size_bytes": size, "message_id": message_id, "ack": ack}


def test_v2_success_returns_the_message_id_the_events_record():
    with vendor() as fleet:
        c = client(fleet)
        mid = send_v2(c)["MessageId"]
        evs = api_events(fleet, "ses")
    assert mid.startswith("0100018c") and mid.endswith("-000000")
    assert evs[1:] == [
        accepted("u1", 1, "u1@users.drill.test", mid, evs[1]["size_bytes"]),
        reply_event("u1", 1, 1, 250, 200, api="ses", path=V2, api_key="AKIDDRILL", rcpt="u1@users.drill.test",
                    text="OK"),
    ]


def test_v2_throttle_is_too_many_requests_exception_429():
    with vendor({"kind": "throttle", "rate_per_s": 0.001, "burst": 1}) as fleet:
        c = client(fleet, config=NO_RETRY)
        send_v2(c)
        with pytest.raises(ClientError) as info:
            send_v2(c, "u2@users.drill.test")
        evs = api_events(fleet, "ses")
    err = info.value.response
    assert err["Error"] == {"Code": "TooManyRequestsException", "Message": "Maximum sending rate exceeded."}
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert evs[-1] == reply_event("u2", 1, 2, 421, 429, api="ses", path=V2, api_key="AKIDDRILL",
                                  rcpt="u2@users.drill.test", text="Maximum sending rate exceeded.",
                                  behavior="throttle", error_code="TooManyRequestsException")


def test_v2_daily_quota_is_limit_exceeded_and_v1_says_throttling_400():
    with vendor({"kind": "throttle", "rate_per_s": 100, "burst": 100, "daily_quota": 1}) as fleet:
        send_v2(client(fleet))
        with pytest.raises(ClientError) as v2:
            send_v2(client(fleet, config=NO_RETRY), "u2@users.drill.test")
        with pytest.raises(ClientError) as v1:
            send_v1(client(fleet, "ses", config=NO_RETRY), "u3@users.drill.test")
    assert v2.value.response["Error"] == {"Code": "LimitExceededException", "Message": "Daily message quota exceeded."}
    assert v2.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert v1.value.response["Error"] == {"Type": "Sender", "Code": "Throttling",
                                          "Message": "Daily message quota exceeded."}
    assert v1.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_v1_query_success_and_rate_throttling_is_http_400():
    with vendor({"kind": "throttle", "rate_per_s": 0.001, "burst": 1}) as fleet:
        c = client(fleet, "ses", config=NO_RETRY)
        mid = send_v1(c)["MessageId"]
        with pytest.raises(ClientError) as info:
            send_v1(c, "u2@users.drill.test")
        evs = api_events(fleet, "ses")
    assert evs[1]["message_id"] == mid
    assert info.value.response["Error"] == {"Type": "Sender", "Code": "Throttling",
                                            "Message": "Maximum sending rate exceeded."}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert evs[-1] == reply_event("u2", 1, 2, 421, 400, api="ses", path="/", api_key="AKIDDRILL",
                                  rcpt="u2@users.drill.test", text="Maximum sending rate exceeded.",
                                  behavior="throttle", error_code="Throttling")


def test_reject_is_message_rejected_in_both_apis():
    with vendor({"kind": "reject", "match_rcpt": "^bad"}) as fleet:
        with pytest.raises(ClientError) as v2:
            send_v2(client(fleet), "bad1@users.drill.test")
        with pytest.raises(ClientError) as v1:
            send_v1(client(fleet, "ses"), "bad2@users.drill.test")
        evs = api_events(fleet, "ses")
    text = "Email address is not verified. The following identities failed the check: bad1@users.drill.test"
    assert v2.value.response["Error"] == {"Code": "MessageRejected", "Message": text}
    assert v1.value.response["Error"]["Code"] == "MessageRejected"
    replies = [e for e in evs if e["kind"] == "mta.reply.sent"]
    assert [(e["corr"], e["code"], e["http_status"], e["error_code"]) for e in replies] == [
        ("bad1", 550, 400, "MessageRejected"), ("bad2", 550, 400, "MessageRejected")]
    assert not [e for e in evs if e["kind"].startswith("mta.message.")]


def test_lose_response_with_boto3_default_retries_stores_the_message_once_per_attempt():
    """boto3's default retries (mode 'standard', 3 attempts, in boto3 1.36+; 'legacy' made 5) retry
    ConnectionClosedError: every attempt was stored, every response lost — the events show one acceptance per
    attempt (the duplicates a real SES would send)."""
    with vendor({"kind": "go_dark", "mode": "lose_response"}) as fleet:
        c = client(fleet)
        retries = c.meta.config.retries
        attempts = retries.get("total_max_attempts") or (3 if retries.get("mode") == "standard" else 5)
        with pytest.raises(ConnectionClosedError):
            send_v2(c)
        evs = api_events(fleet, "ses", closed=attempts)
        analysis = analyze([Event.from_dict(e) for e in fleet.events()])
    acc = [e for e in evs if e["kind"] == "mta.message.accepted"]
    assert len(acc) == attempts >= 2
    assert [(e["corr"], e["conn"], e["txn"], e["ack"]) for e in acc] == [("u1", i, 1, "lost")
                                                                        for i in range(1, attempts + 1)]
    assert len({e["message_id"] for e in acc}) == attempts  # each attempt is a new message to SES
    assert [e["kind"] for e in evs if e["kind"] == "mta.reply.sent"] == []
    # the analysis counts them as it counts an MTA's lost-250 duplicates
    assert {k: analysis.metrics[k] for k in ("delivered", "duplicates", "duplicates_after_lost_ack",
                                              "attempts_total")} == {
        "delivered": 1, "duplicates": attempts - 1, "duplicates_after_lost_ack": attempts - 1,
        "attempts_total": attempts}


@pytest.mark.parametrize("mode", ["hang", "reset"])
def test_hang_and_reset_count_every_boto3_attempt(mode: str):
    """A request the vendor never answers is still a delivery attempt: boto3 (3 attempts, a short read timeout
    for hang) makes exactly 3 requests, each recorded as mta.request.received, and the analysis counts 3
    attempts of the one message (retry amplification 3, two retry intervals), none delivered."""
    config = botocore.config.Config(retries={"total_max_attempts": 3, "mode": "standard"}, read_timeout=0.5,
                                    connect_timeout=5)
    with vendor({"kind": "go_dark", "mode": mode}) as fleet:
        with pytest.raises((ReadTimeoutError, ConnectionClosedError, EndpointConnectionError)):
            send_v2(client(fleet, config=config))
        evs = api_events(fleet, "ses", closed=3)
        analysis = analyze([Event.from_dict(e) for e in fleet.events()])
    received = [e for e in evs if e["kind"] == "mta.request.received"]
    assert received == [{"kind": "mta.request.received", "corr": "u1", "conn": i, "txn": 1,
                         "rcpt": "u1@users.drill.test", "api": "ses", "endpoint": "v2", "behavior": "go_dark"}
                        for i in (1, 2, 3)]
    assert [e["kind"] for e in evs if e["kind"].startswith("mta.message") or e["kind"] == "mta.reply.sent"] == []
    assert {k: analysis.metrics[k] for k in ("attempts_total", "retry_amplification", "delivered")} == {
        "attempts_total": 3, "retry_amplification": 3.0, "delivered": 0}
    assert analysis.by_mta["ses"]["attempts_total"] == 3
    assert len(analysis.retry_intervals_s) == 2
