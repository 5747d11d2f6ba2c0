"""postmarker, the official mailgun SDK and resend against their fakes: success, throttle, rejection and
lose_response — mailgun ≥ 1.9 retries a lost response by itself (duplicates), Resend's Idempotency-Key prevents them."""

from __future__ import annotations

import pytest
import requests
import resend
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread, api_events, reply_event
from maildrill.harness.analysis.core import analyze
from maildrill.harness.analysis.join import join, origin_of
from maildrill.harness.events import Event
from mailgun.client import Client
from mailgun.handlers.error_handler import ApiError
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError


def pick(d: dict, *keys: str) -> dict:
    return {k: d[k] for k in keys}


def vendor(api: str, *behaviors: dict) -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name="v", api=api, behaviors=list(behaviors))]),
                       control=False)


# --- Postmark ------------------------------------------------------------------------------------------------
def pm_send(fleet: FleetThread, to: str = "u1@users.drill.test") -> dict:
    """One send from a new client (so on a new connection)."""
    client = PostmarkClient(server_token="pm-token", root_api_url=fleet["v"].base_url)
    return client.emails.send(From="app@app.drill.test", To=to, Subject="Your code", TextBody="123456")


def test_postmark_success_throttle_and_inactive_recipient():
    with vendor("postmark", {"kind": "reject", "reason": "policy", "match_rcpt": "^bad"},
                {"kind": "throttle", "rate_per_s": 0.001, "burst": 1}) as fleet:
        ok = pm_send(fleet)
        with pytest.raises(ClientError) as rejected:
            pm_send(fleet, "bad1@users.drill.test")
        with pytest.raises(ClientError) as throttled:
            pm_send(fleet, "u2@users.drill.test")
        evs = api_events(fleet, "v")
    assert (ok["ErrorCode"], ok["Message"], ok["To"]) == (0, "OK", "u1@users.drill.test")
    assert rejected.value.error_code == 406
    assert throttled.value.error_code == 429
    assert str(throttled.value) == "[429] Rate limit exceeded."
    assert isinstance(throttled.value.__cause__, requests.HTTPError)
    assert throttled.value.__cause__.response.status_code == 429
    inactive = ("You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
                "bad1@users.drill.test. Inactive recipients are ones that have generated a hard bounce, a spam "
                "complaint, or a manual suppression.")
    assert [e for e in evs if e["kind"] == "mta.reply.sent"] == [
        reply_event("u1", 1, 1, 250, 200, api="postmark", path="/email", api_key="pm-token",
                    rcpt="u1@users.drill.test", text="OK"),
        reply_event("bad1", 2, 1, 550, 422, api="postmark", path="/email", api_key="pm-token",
                    rcpt="bad1@users.drill.test", text=inactive, behavior="reject", error_code="406"),
        reply_event("u2", 3, 1, 421, 429, api="postmark", path="/email", api_key="pm-token",
                    rcpt="u2@users.drill.test", text="Rate limit exceeded.", behavior="throttle", error_code="429"),
    ]
    assert [e["message_id"] for e in evs if e["kind"] == "mta.message.accepted"] == [ok["MessageID"]]


def test_postmark_batch_answers_per_message_an_inactive_recipient_fails_only_its_own_message():
    """As Postmark: the batch is answered 200 with one result per message; a message with an inactive recipient
    (the one `match_rcpt` names, even when it is not the first) gets ErrorCode 406 and no id, the others are
    stored. The events name each refused message by the recipient refused; the analysis sees exactly u1 and u4
    delivered and the two refused recipients bounced."""
    with vendor("postmark", {"kind": "reject", "reason": "policy", "match_rcpt": "^bad"}) as fleet:
        client = PostmarkClient(server_token="pm-token", root_api_url=fleet["v"].base_url)
        mails = [{"From": "app@app.drill.test", "To": to, "Subject": "Your code", "TextBody": "123456"}
                 for to in ("u1@users.drill.test", "bad1@users.drill.test",
                            "u2@users.drill.test, bad2@users.drill.test", "u4@users.drill.test")]
        results = client.emails.send_batch(*mails)
        with pytest.raises(ClientError) as single:  # one message, its second recipient inactive: refused whole
            client.emails.send(From="app@app.drill.test", To="u5@users.drill.test, bad5@users.drill.test",
                               Subject="Your code", TextBody="123456")
        evs = api_events(fleet, "v")
        everything = fleet.events()

    def inactive(addr: str) -> str:
        return (f"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
                f"{addr}. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a "
                "manual suppression.")

    assert [(r["ErrorCode"], r["Message"], r.get("To"), "MessageID" in r) for r in results] == [
        (0, "OK", "u1@users.drill.test", True), (406, inactive("bad1@users.drill.test"), None, False),
        (406, inactive("bad2@users.drill.test"), None, False), (0, "OK", "u4@users.drill.test", True)]
    assert single.value.error_code == 406 and str(single.value) == f"[406] {inactive('bad5@users.drill.test')}"
    accepted = [e for e in evs if e["kind"] == "mta.message.accepted"]
    assert [(e["corr"], e["message_id"]) for e in accepted] == [("u1", results[0]["MessageID"]),
                                                               ("u4", results[3]["MessageID"])]
    batch = dict(api="postmark", path="/email/batch", api_key="pm-token", behavior="reject")
    assert [e for e in evs if e["kind"] == "mta.reply.sent"] == [
        reply_event("bad1", 1, 1, 550, 200, **batch, rcpt="bad1@users.drill.test", text=inactive(
            "bad1@users.drill.test"), error_code="406"),
        reply_event("bad2", 1, 1, 550, 200, **batch, rcpt="bad2@users.drill.test", rcpt_count=2, text=inactive(
            "bad2@users.drill.test"), error_code="406"),
        reply_event("u1", 1, 1, 250, 200, **{**batch, "behavior": "default"}, rcpt="u1@users.drill.test",
                    rcpt_count=2, text="OK: 2 of 4 messages accepted"),
        reply_event("bad5", 1, 2, 550, 422, api="postmark", path="/email", api_key="pm-token", behavior="reject",
                    rcpt="bad5@users.drill.test", rcpt_count=2, text=inactive("bad5@users.drill.test"),
                    error_code="406"),
    ]
    run = [Event.from_dict(e) for e in everything]
    j = join(run, origin_of(run, {}))
    assert {c: (len(m.acceptances), m.first_5xx is not None) for c, m in j.messages.items()} == {
        "u1": (1, False), "u4": (1, False), "bad1": (0, True), "bad2": (0, True), "bad5": (0, True)}
    assert pick(analyze(run).metrics, "delivered", "attempts_total") == {"delivered": 2, "attempts_total": 2}


def test_a_refusal_names_the_recipient_of_the_reject_that_fired_among_rejects_of_one_label():
    """Two `reject`s share the label "reject"; the second fires for `u6, sup6`: its refusal names sup6 (which its
    match_rcpt matches), not the first recipient and not what the first reject would match."""
    with vendor("postmark", {"kind": "reject", "reason": "unknown_user", "match_rcpt": "^bad"},
                {"kind": "reject", "reason": "policy", "match_rcpt": "^sup"}) as fleet:
        with pytest.raises(ClientError) as refused:
            pm_send(fleet, "u6@users.drill.test, sup6@users.drill.test")
        evs = api_events(fleet, "v")
    assert refused.value.error_code == 406 and "Found inactive addresses: sup6@users.drill.test." in str(
        refused.value)
    assert [(e["corr"], e["rcpt"], e["code"]) for e in evs if e["kind"] == "mta.reply.sent"] == [
        ("sup6", "sup6@users.drill.test", 550)]


def test_postmark_lose_response_is_one_lost_acceptance_postmarker_does_not_retry():
    with vendor("postmark", {"kind": "go_dark", "mode": "lose_response"}) as fleet:
        with pytest.raises(requests.ConnectionError):
            pm_send(fleet)
        evs = api_events(fleet, "v", closed=1)
    assert [(e["kind"], e.get("ack")) for e in evs] == [("mta.connection.opened", None),
                                                        ("mta.message.accepted", "lost"),
                                                        ("mta.connection.closed", None)]


# --- Mailgun -------------------------------------------------------------------------------------------------
def mg_client(fleet: FleetThread) -> Client:
    return Client(auth=("api", "mg-key"), api_url=fleet["v"].base_url)


def mg_send(client: Client, to: str = "u1@users.drill.test") -> requests.Response:
    return client.messages.create(data={"from": "app@app.drill.test", "to": to, "subject": "Your code",
                                        "text": "123456"}, domain="mg.drill.test")


def test_mailgun_success_and_rejection():
    with vendor("mailgun", {"kind": "reject", "match_rcpt": "^bad"}) as fleet:
        c = mg_client(fleet)
        ok = mg_send(c)
        bad = mg_send(c, "bad1@users.drill.test")
        evs = api_events(fleet, "v")
    assert ok.status_code == 200
    body = ok.json()
    assert body["message"] == "Queued. Thank you."
    assert body["id"].startswith("<") and body["id"].endswith("@mg.drill.test>")
    assert bad.status_code == 400
    text = "to parameter is not a valid address (bad1@users.drill.test). please check documentation"
    assert bad.json() == {"message": text}
    path = "/v3/mg.drill.test/messages"
    assert [e for e in evs if e["kind"] == "mta.reply.sent"] == [
        reply_event("u1", 1, 1, 250, 200, api="mailgun", path=path, api_key="mg-key", rcpt="u1@users.drill.test",
                    text="Queued. Thank you."),
        reply_event("bad1", 1, 2, 550, 400, api="mailgun", path=path, api_key="mg-key",
                    rcpt="bad1@users.drill.test", text=text, behavior="reject", error_code="400"),
    ]


def test_mailgun_throttle_is_429_with_retry_after_and_the_sdk_retries_it():
    """A 1/s limit with a burst of 1: the second send gets 429 (Retry-After: 1); mailgun-python waits and retries
    it by itself, and the retry passes."""
    with vendor("mailgun", {"kind": "throttle", "rate_per_s": 1, "burst": 1}) as fleet:
        c = mg_client(fleet)
        assert mg_send(c).status_code == 200
        second = mg_send(c, "u2@users.drill.test")
        evs = api_events(fleet, "v")
    assert second.status_code == 200
    replies = [(e["corr"], e["http_status"], e["code"]) for e in evs if e["kind"] == "mta.reply.sent"]
    assert replies[0] == ("u1", 200, 250)
    assert replies[-1] == ("u2", 200, 250)
    assert set(replies[1:-1]) == {("u2", 429, 421)} and len(replies) >= 3


def test_mailgun_lose_response_the_sdk_retries_into_duplicates():
    """mailgun-python ≥ 1.9 retries POST /messages on a network error: each attempt was stored, so one send
    becomes 1 + max_retries acceptances of the same recipient."""
    with vendor("mailgun", {"kind": "go_dark", "mode": "lose_response"}) as fleet:
        c = mg_client(fleet)
        retries = c.config.retry_policy.max_retries if hasattr(c.config, "retry_policy") else 3
        with pytest.raises(ApiError, match="Network routing failed"):
            mg_send(c)
        evs = api_events(fleet, "v", closed=1 + retries, timeout_s=60)
        analysis = analyze([Event.from_dict(e) for e in fleet.events()])
    acc = [(e["corr"], e["ack"]) for e in evs if e["kind"] == "mta.message.accepted"]
    assert acc == [("u1", "lost")] * (1 + retries)
    assert (analysis.metrics["duplicates"], analysis.metrics["duplicates_after_lost_ack"]) == (retries, retries)


# --- Resend --------------------------------------------------------------------------------------------------
def rs_send(fleet: FleetThread, to: str = "u1@users.drill.test", key: str | None = None) -> dict:
    resend.api_key = "re_drill"
    resend.api_url = fleet["v"].base_url
    params = {"from": "app@app.drill.test", "to": [to], "subject": "Your code", "text": "123456"}
    return resend.Emails.send(params, {"idempotency_key": key} if key else None)


def test_resend_success_throttle_headers_and_rejection():
    with vendor("resend", {"kind": "reject", "match_rcpt": "^bad"},
                {"kind": "throttle", "rate_per_s": 0.5, "burst": 1}) as fleet:
        ok = rs_send(fleet)
        with pytest.raises(resend.exceptions.ValidationError) as rejected:
            rs_send(fleet, "bad1@users.drill.test")
        with pytest.raises(resend.exceptions.RateLimitError) as throttled:
            rs_send(fleet, "u2@users.drill.test")
        evs = api_events(fleet, "v")
    assert rejected.value.code == 422
    assert throttled.value.code == 429
    assert throttled.value.error_type == "rate_limit_exceeded"
    acc = [e["message_id"] for e in evs if e["kind"] == "mta.message.accepted"]
    assert acc == [ok["id"]]
    assert [(e["corr"], e["http_status"], e["code"], e["error_code"]) for e in evs if e["kind"] == "mta.reply.sent"] \
        == [("u1", 200, 250, None), ("bad1", 422, 550, "validation_error"), ("u2", 429, 421, "rate_limit_exceeded")]


def test_resend_rate_limit_headers_on_429():
    with vendor("resend", {"kind": "throttle", "rate_per_s": 0.5, "burst": 1}) as fleet:
        rs_send(fleet)
        resp = requests.post(f"{fleet['v'].base_url}/emails", headers={"Authorization": "Bearer re_drill"},
                             json={"from": "app@app.drill.test", "to": ["u2@users.drill.test"], "subject": "s",
                                   "text": "x"}, timeout=10)
    assert resp.status_code == 429
    assert resp.json()["name"] == "rate_limit_exceeded"
    assert resp.headers["ratelimit-limit"] == "1"
    assert resp.headers["ratelimit-remaining"] == "0"
    assert resp.headers["retry-after"] == "2"


def test_resend_idempotency_key_replays_the_first_response_and_stores_nothing_new():
    """A lost response, then the same send with the same Idempotency-Key: the same id, one acceptance."""
    with vendor("resend", {"kind": "go_dark", "mode": "lose_response", "probability": 1.0}) as fleet:
        with pytest.raises(resend.exceptions.ResendError, match="Remote end closed connection without response"):
            rs_send(fleet, key="otp-u1-1")
        fleet.set_behaviors("v", [])
        again = rs_send(fleet, key="otp-u1-1")
        twice = rs_send(fleet, key="otp-u1-1")
        other = rs_send(fleet, "u2@users.drill.test")
        evs = api_events(fleet, "v")
        analysis = analyze([Event.from_dict(e) for e in fleet.events()])
    assert (analysis.metrics["delivered"], analysis.metrics["duplicates"]) == (2, 0)
    acc = [(e["corr"], e["ack"], e["message_id"]) for e in evs if e["kind"] == "mta.message.accepted"]
    assert acc == [("u1", "lost", again["id"]), ("u2", "sent", other["id"])]
    assert twice["id"] == again["id"]
    replies = [(e["corr"], e["behavior"], e["idempotency_key"], e.get("replayed")) for e in evs
               if e["kind"] == "mta.reply.sent"]
    assert replies == [("u1", "idempotency", "otp-u1-1", True), ("u1", "idempotency", "otp-u1-1", True),
                       ("u2", "default", None, None)]
