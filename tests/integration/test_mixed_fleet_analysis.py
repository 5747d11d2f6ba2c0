"""Ground truth from a real mixed fleet: one SMTP MTA and two fake email-API vendors in one run, driven by
smtplib, the SendGrid SDK and boto3's sesv2, then the analysis of what they recorded.

The test is the sender: per message it does what the metric under test needs, and the fleet's behaviours
pick the outcome by recipient (`match_rcpt`), so every count is fixed by the script, not by timing.
"""

from __future__ import annotations

import http.client
import smtplib
from email.message import EmailMessage

import boto3
import pytest
from maildrill.fake_mta.config import FleetSpec, MTASpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread
from maildrill.harness.analysis import analyze
from maildrill.harness.clock import MonotonicClock
from maildrill.harness.events import Event
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

SENDER = "app@app.drill.test"
FLEET = FleetSpec(
    mtas=[MTASpec(name="relay")],
    vendors=[VendorSpec(name="primary", api="sendgrid", behaviors=[
        {"kind": "go_dark", "mode": "lose_response", "match_rcpt": "^u1@"},  # stored, the response lost
        {"kind": "tempfail", "match_rcpt": "^u2@"},                            # a 5xx from the API: deferred
        {"kind": "reject", "match_rcpt": "^u3@"},                              # a permanent rejection
    ]), VendorSpec(name="backup", api="ses"), VendorSpec(name="idle", api="postmark")])
SCENARIO = {"time_scale": 1, "load": {"classes": [{"name": "otp", "ttl_s": 60}]},
            "mtas": [{"name": "relay"}],
            "vendors": [{"name": "primary", "api": "sendgrid"}, {"name": "backup", "api": "ses"},
                        {"name": "idle", "api": "postmark"}]}


def test_a_real_mixed_smtp_and_api_run_gives_exact_metrics() -> None:
    with FleetThread(FLEET, clock=MonotonicClock(), control=False) as fleet:
        sendgrid = SendGridAPIClient("SG.test-key", host=fleet["primary"].base_url)
        ses = boto3.client("sesv2", endpoint_url=fleet["backup"].base_url, region_name="us-east-1",
                           aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")
        relay = fleet["relay"]
        load = fleet.memory.child("load/0")  # type: ignore[union-attr]

        def request(corr: str) -> str:
            load.record("load.request.completed", corr, **{"class": "otp", "resend": 0, "ok": True,
                                                           "latency_ms": 1.0, "status": 202})
            return f"{corr}@users.drill.test"

        def via_sendgrid(rcpt: str) -> None:
            sendgrid.send(Mail(from_email=SENDER, to_emails=rcpt, subject="code", plain_text_content="123456"))

        def via_ses(rcpt: str) -> None:
            ses.send_email(FromEmailAddress=SENDER, Destination={"ToAddresses": [rcpt]},
                           Content={"Simple": {"Subject": {"Data": "code"}, "Body": {"Text": {"Data": "123456"}}}})

        def via_smtp(rcpt: str) -> None:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = SENDER, rcpt, "code"
            msg.set_content("123456")
            with smtplib.SMTP(relay.host, relay.port, timeout=10) as s:
                s.send_message(msg)

        rcpt = request("u1")
        with pytest.raises(http.client.RemoteDisconnected):  # the SDK never saw the 202 ...
            via_sendgrid(rcpt)
        via_ses(rcpt)  # ... so it fails over: a duplicate after a lost response
        rcpt = request("u2")
        with pytest.raises(HTTPError) as tempfail:
            via_sendgrid(rcpt)
        assert tempfail.value.status_code == 500
        via_ses(rcpt)  # deferred at the primary, delivered once by the backup
        rcpt = request("u3")
        with pytest.raises(HTTPError) as rejected:
            via_sendgrid(rcpt)
        assert rejected.value.status_code == 400
        via_smtp(rcpt)  # a permanent rejection retried over SMTP: the bug the metric exists for
        rcpt = request("u4")
        via_smtp(rcpt)
        via_sendgrid(rcpt)  # sent to both: a failover duplicate across an MTA and a vendor
        via_sendgrid(request("u5"))
        fleet.wait_for(lambda evs: sum(e["kind"] == "mta.message.accepted" for e in evs) == 7, 10,
                       what="7 acceptances")
        recorded = list(fleet.events())

    events = [Event(e["t_s"], e["source"], e["kind"], e["corr"],
                    {k: v for k, v in e.items() if k not in ("t_s", "source", "kind", "corr")}) for e in recorded]
    a = analyze(events, SCENARIO)
    m = a.metrics
    assert {k: m[k] for k in ("messages_requested", "delivered", "undelivered", "attempts_total", "duplicates",
                              "duplicate_messages", "duplicates_after_lost_ack", "duplicates_failover",
                              "permanent_failures_retried", "otp_expired")} == {
        "messages_requested": 5, "delivered": 5, "undelivered": 0, "attempts_total": 9, "duplicates": 2,
        "duplicate_messages": 2, "duplicates_after_lost_ack": 1, "duplicates_failover": 1,
        "permanent_failures_retried": 1, "otp_expired": 0}
    assert m["deferred_ratio"] == pytest.approx(1 / 9)  # u2's 500 from the API, as a 4xx
    scoped = {name: {k: v[k] for k in ("delivered", "attempts_total", "duplicates", "permanent_failures_retried")}
              for name, v in a.by_mta.items()}
    assert scoped == {
        "primary": {"delivered": 3, "attempts_total": 5, "duplicates": 1, "permanent_failures_retried": 1},
        "backup": {"delivered": 2, "attempts_total": 2, "duplicates": 1, "permanent_failures_retried": 0},
        "relay": {"delivered": 2, "attempts_total": 2, "duplicates": 0, "permanent_failures_retried": 0},
        "idle": {"delivered": 0, "attempts_total": 0, "duplicates": 0, "permanent_failures_retried": 0}}
    assert sorted((o.rule, o.corr) for o in a.offenders) == [
        ("duplicates", "u1"), ("duplicates", "u4"), ("permanent_failures_retried", "u3")]
    lost = next(o for o in a.offenders if o.corr == "u1")
    assert lost.detail.startswith("accepted 2 times: by primary at ") and " s (250 lost), by backup at " in lost.detail
