"""Each fake vendor's delivery webhooks, received by a real aiohttp server on 127.0.0.1 and checked with the
vendor's own verification code where one exists (sendgrid's EventWebhook, svix's Webhook.verify), Mailgun's
documented HMAC recipe, and SNS's documented envelope and signature; retries, stop statuses and pauses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from maildrill.fake_mta.vendors.webhooks.ses import string_to_sign
from sendgrid.helpers.eventwebhook import EventWebhook
from svix.webhooks import Webhook
from webhook_support import Receiver, kinds, make_vendor, send, wait_for

FAST = {"lag_s": {"distribution": "fixed", "value_s": 0.0}}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def sent_answered(event: str, mid: str, rcpt: str, url: str, api: str, *, webhook: int, event_id: str,
                  attempt: int = 1, status: int = 200, corr: str | None = None) -> list[dict]:
    base = {"corr": corr, "webhook": webhook, "copy": 0, "attempt": attempt, "event": event, "message_id": mid,
            "rcpt": rcpt, "event_id": event_id, "url": url, "api": api}
    return [{"kind": "mta.webhook.sent", **base}, {"kind": "mta.webhook.answered", **base, "status": status}]


def strip(evs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("lag_s", "latency_ms")} for e in evs]


def test_sendgrid_event_webhook_verifies_with_sendgrids_own_helper():
    async def main():
        async with Receiver() as rx:
            v = make_vendor("sendgrid", {"url": rx.url + "/hooks/sendgrid", "secret": "drill-key",
                                         "events": ["processed", "delivered"], **FAST})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test", "u2@users.test"])
                await wait_for(lambda: len(rx.hits) == 4, what="4 webhooks")
            return rx, v

    rx, v = run(main())
    key = EventWebhook().convert_public_key_to_ecdsa(v.webhooks.verification_key)
    events = []
    for hit in rx.hits:
        assert hit.path == "/hooks/sendgrid"
        assert hit.headers["Content-Type"] == "application/json"
        assert EventWebhook().verify_signature(hit.body.decode(), hit.headers["X-Twilio-Email-Event-Webhook-Signature"],
                                               hit.headers["X-Twilio-Email-Event-Webhook-Timestamp"], key)
        tampered = hit.body.decode().replace("users.test", "users.tesT")
        assert not EventWebhook().verify_signature(tampered, hit.headers["X-Twilio-Email-Event-Webhook-Signature"],
                                                   hit.headers["X-Twilio-Email-Event-Webhook-Timestamp"], key)
        batch = json.loads(hit.body)
        assert isinstance(batch, list) and len(batch) == 1
        events += batch
    accepted = [e for e in v.recorder.events if e["kind"] == "mta.message.accepted"]
    ids = {e["rcpt"]: e["message_id"] for e in accepted}
    by = sorted(events, key=lambda e: (e["email"], e["event"] != "processed"))
    assert [(e["email"], e["event"]) for e in by] == [("u1@users.test", "processed"), ("u1@users.test", "delivered"),
                                                     ("u2@users.test", "processed"), ("u2@users.test", "delivered")]
    for e in by:
        assert e["sg_message_id"].startswith(ids[e["email"]] + ".filterdrecv-")
        assert set(e) >= {"email", "timestamp", "smtp-id", "event", "sg_event_id", "sg_message_id"}
        assert isinstance(e["timestamp"], int)
    assert by[1]["response"] == "250 2.0.0 OK"
    # the webhook events, whole: processed before delivered for each message (reorder: false)
    wh = strip(kinds(v))
    assert [(e["kind"], e["rcpt"], e["event"]) for e in wh if e["kind"] == "mta.webhook.answered"].count(
        ("mta.webhook.answered", "u1@users.test", "delivered")) == 1
    assert {e["kind"] for e in wh} == {"mta.webhook.sent", "mta.webhook.answered"}
    assert len(wh) == 8


def test_sendgrid_retries_a_503_then_stops_on_success():
    async def main():
        async with Receiver(status=lambda i, r: 503 if i < 2 else 200) as rx:
            v = make_vendor("sendgrid", {"url": rx.url + "/h", "time_scale": 0.001, **FAST})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: len(rx.hits) == 3, what="3 attempts")
                await wait_for(lambda: len(kinds(v)) == 6, what="6 webhook events")
            return rx, v

    rx, v = run(main())
    wh = strip(kinds(v))
    mid = wh[0]["message_id"]
    eid = wh[0]["event_id"]
    url = rx.url + "/h"
    assert wh == (sent_answered("delivered", mid, "u1@users.test", url, "sendgrid", webhook=1, event_id=eid,
                                status=503, corr="u1")
                  + sent_answered("delivered", mid, "u1@users.test", url, "sendgrid", webhook=1, event_id=eid,
                                  attempt=2, status=503, corr="u1")
                  + sent_answered("delivered", mid, "u1@users.test", url, "sendgrid", webhook=1, event_id=eid,
                                  attempt=3, corr="u1"))
    assert rx.hits[0].body == rx.hits[2].body  # the same event each time


def test_ses_sns_envelope_confirmation_first_signed_and_message_id_reused_on_retry():
    async def main():
        async with Receiver(status=lambda i, r: 500 if i in (1, 2, 3, 4) else 200) as rx:
            v = make_vendor("ses", {"url": rx.url + "/hooks/ses", "time_scale": 0.001, **FAST,
                                    "outcomes": {"bounce_match_rcpt": "^bad", "bounce_type": "transient"}})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: any(e["kind"] == "mta.webhook.dropped" for e in kinds(v)), what="a drop")
                await send(s, v, ["bad1@users.test"])
                await wait_for(lambda: len(rx.hits) == 6, what="6 POSTs")
                confirm = json.loads(rx.hits[0].body)["SubscribeURL"]
                r = await s.get(confirm)
                assert r.status == 200
                cert = await (await s.get(json.loads(rx.hits[1].body)["SigningCertURL"])).read()
            return rx, v, cert

    rx, v, cert_pem = run(main())
    cert = x509.load_pem_x509_certificate(cert_pem)
    types = [h.headers["x-amz-sns-message-type"] for h in rx.hits]
    assert types == ["SubscriptionConfirmation"] + ["Notification"] * 5
    envs = [json.loads(h.body) for h in rx.hits]
    for h, env in zip(rx.hits, envs, strict=True):
        assert h.headers["Content-Type"] == "text/plain; charset=UTF-8"
        assert h.headers["x-amz-sns-message-id"] == env["MessageId"]
        assert env["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:maildrill-v"
        assert env["SignatureVersion"] == "2"
        cert.public_key().verify(base64.b64decode(env["Signature"]), string_to_sign(env), padding.PKCS1v15(),
                                 hashes.SHA256())
    assert set(envs[0]) == {"Type", "MessageId", "Token", "TopicArn", "Message", "SubscribeURL", "Timestamp",
                            "SignatureVersion", "Signature", "SigningCertURL"}
    assert set(envs[1]) == {"Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion",
                            "Signature", "SigningCertURL", "UnsubscribeURL"}
    # the first notification: 1 try + 3 retries 20 s apart (scaled), all 500, the same MessageId, then dropped
    assert len({e["MessageId"] for e in envs[1:5]}) == 1
    delivery = json.loads(envs[1]["Message"])
    assert delivery["eventType"] == "Delivery"
    assert delivery["delivery"]["recipients"] == ["u1@users.test"]
    assert delivery["mail"]["destination"] == ["u1@users.test"]
    bounce = json.loads(envs[5]["Message"])
    assert bounce["eventType"] == "Bounce"
    assert bounce["bounce"]["bounceType"] == "Transient"
    assert bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] == "bad1@users.test"
    drops = [e for e in kinds(v) if e["kind"] == "mta.webhook.dropped"]
    assert [(d["event"], d["attempt"], d["reason"], d["status"]) for d in drops] == [
        ("delivered", 4, "retries_exhausted", 500)]
    assert kinds(v, "mta.webhook.subscription")[0]["kind"] == "mta.webhook.subscription_confirmed"


def test_postmark_delivery_and_bounce_records_and_403_stops_retries():
    async def main():
        async with Receiver() as rx:
            v = make_vendor("postmark", {"url": rx.url + "/pm", **FAST, "time_scale": 0.001,
                                         "headers": {"Authorization": "Basic dXNlcjpwdw=="},
                                         "outcomes": {"bounce_match_rcpt": "^bad"}})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test", "bad1@users.test"])
                await wait_for(lambda: len(rx.hits) == 2, what="2 webhooks")
            return rx, v

    rx, v = run(main())
    recs = sorted((json.loads(h.body) for h in rx.hits), key=lambda r: r["RecordType"])
    assert [r["RecordType"] for r in recs] == ["Bounce", "Delivery"]
    assert all(h.headers["Authorization"] == "Basic dXNlcjpwdw==" for h in rx.hits)
    bounce, delivery = recs
    assert set(delivery) == {"RecordType", "ServerID", "MessageStream", "MessageID", "Recipient", "Tag",
                             "DeliveredAt", "Details", "Metadata"}
    assert delivery["Recipient"] == "u1@users.test"
    assert (bounce["Type"], bounce["TypeCode"], bounce["Email"]) == ("HardBounce", 1, "bad1@users.test")
    assert {"ID", "Type", "TypeCode", "Name", "Tag", "MessageID", "ServerID", "Description", "Details", "Email",
            "From", "BouncedAt", "DumpAvailable", "Inactive", "CanActivate", "Subject", "Content",
            "Metadata"} <= set(bounce)

    async def refused():
        async with Receiver(status=lambda i, r: 403) as rx:
            v = make_vendor("postmark", {"url": rx.url + "/pm", **FAST, "time_scale": 0.001})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: any(e["kind"] == "mta.webhook.dropped" for e in kinds(v)), what="a drop")
            return rx, v

    rx, v = run(refused())
    assert len(rx.hits) == 1
    assert [(e["kind"], e.get("reason")) for e in kinds(v)] == [
        ("mta.webhook.sent", None), ("mta.webhook.answered", None), ("mta.webhook.dropped", "refused")]


def test_mailgun_signature_by_the_documented_hmac_and_delivered_never_retried():
    key = "key-drill-signing"

    async def main():
        async with Receiver(status=lambda i, r: 500) as rx:
            v = make_vendor("mailgun", {"url": rx.url + "/mg", "secret": key, **FAST, "time_scale": 0.0001,
                                        "events": ["delivered", "bounce"], "outcomes": {"bounce_match_rcpt": "^bad"}})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test", "bad1@users.test"])
                await wait_for(lambda: len([e for e in kinds(v) if e["kind"] == "mta.webhook.dropped"]) == 2,
                               what="both given up")
            return rx, v

    rx, v = run(main())
    for h in rx.hits:
        body = json.loads(h.body)
        sig = body["signature"]
        expected = hmac.new(key.encode(), (sig["timestamp"] + sig["token"]).encode(), hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, sig["signature"])
        assert set(body) == {"signature", "event-data"}
    by_event = {}
    for h in rx.hits:
        data = json.loads(h.body)["event-data"]
        by_event.setdefault((data["event"], data["recipient"]), []).append(data)
    # delivered: one POST, not retried; failed (permanent bounce): 1 + 6 retries
    assert {k: len(v_) for k, v_ in by_event.items()} == {("delivered", "u1@users.test"): 1,
                                                          ("failed", "bad1@users.test"): 7}
    failed = by_event[("failed", "bad1@users.test")][0]
    assert (failed["severity"], failed["message"]["headers"]["to"]) == ("permanent", "bad1@users.test")
    drops = sorted((d["event"], d["attempt"], d["reason"]) for d in kinds(v) if d["kind"] == "mta.webhook.dropped")
    assert drops == [("bounce", 7, "retries_exhausted"), ("delivered", 1, "not_retried")]


def test_resend_events_verify_with_svix():
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

    async def main():
        async with Receiver() as rx:
            v = make_vendor("resend", {"url": rx.url + "/rs", "secret": secret, **FAST, "duplicate": 1.0,
                                       "events": ["processed", "delivered"]})
            async with v, aiohttp.ClientSession() as s:
                text = await send(s, v, ["u1@users.test"])
                await wait_for(lambda: len(rx.hits) == 4, what="4 webhooks (2 events, each duplicated)")
            return rx, v, json.loads(text)

    rx, _v, sent = run(main())
    wh = Webhook(secret)
    payloads = []
    for h in rx.hits:
        wh.verify(h.body, {k.lower(): val for k, val in h.headers.items()})  # raises WebhookVerificationError
        payloads.append(json.loads(h.body))
        with pytest.raises(Exception, match="No matching signature"):
            wh.verify(h.body + b" ", {k.lower(): val for k, val in h.headers.items()})
    assert sorted(p["type"] for p in payloads) == ["email.delivered", "email.delivered", "email.sent", "email.sent"]
    assert {p["data"]["email_id"] for p in payloads} == {sent["data"][0]["id"]}
    ids = [h.headers["svix-id"] for h in rx.hits]
    assert len(set(ids)) == 2  # a duplicate carries the same svix-id


def test_a_sut_that_does_not_answer_in_time_gets_the_webhook_again():
    never = asyncio.Event()

    async def main():
        async def slow_first(request):
            if not slow_first.seen:
                slow_first.seen = True
                await never.wait()  # the first POST is never answered
            return aiohttp.web.Response(text="ok")

        slow_first.seen = False
        app = aiohttp.web.Application()
        app.router.add_post("/rs", slow_first)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/rs"
        try:
            v = make_vendor("resend", {"url": url, **FAST, "timeout_s": 0.3, "time_scale": 0.01})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: any(e["kind"] == "mta.webhook.answered" for e in kinds(v)), what="answer")
            return v
        finally:
            never.set()
            await runner.cleanup()

    v = run(main())
    assert [(e["kind"], e["attempt"], e.get("error"), e.get("status")) for e in kinds(v)] == [
        ("mta.webhook.sent", 1, None, None), ("mta.webhook.failed", 1, "timeout", None),
        ("mta.webhook.sent", 2, None, None), ("mta.webhook.answered", 2, None, 200)]
    assert kinds(v)[1]["latency_ms"] >= 300


def test_reorder_false_keeps_each_messages_events_in_order_and_true_lets_them_cross():
    async def main(reorder: bool):
        async with Receiver() as rx:
            v = make_vendor("sendgrid", {"url": rx.url + "/h", "events": ["processed", "delivered"],
                                         "lag_s": {"distribution": "uniform", "min_s": 0, "max_s": 1},
                                         "time_scale": 0.1, "reorder": reorder}, seed=3)
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, [f"u{i}@users.test" for i in range(100)])
                await wait_for(lambda: len(rx.hits) == 200, what="200 webhooks")
            return v

    def crossed(v) -> int:
        order = [(e["rcpt"], e["event"]) for e in kinds(v) if e["kind"] == "mta.webhook.sent"]
        return sum(order.index((r, "delivered")) < order.index((r, "processed")) for r, ev in order
                   if ev == "processed")

    assert crossed(run(main(False))) == 0
    assert crossed(run(main(True))) > 20  # independent uniform lags: about half of them cross


def test_ses_can_report_a_delivery_then_a_bounce_for_the_same_recipient():
    async def main():
        async with Receiver() as rx:
            v = make_vendor("ses", {"url": rx.url + "/ses", **FAST, "outcomes": {"bounce_after_delivery": 1.0}})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: len(rx.hits) == 3, what="confirmation, Delivery, Bounce")
            return rx

    rx = run(main())
    msgs = [json.loads(json.loads(h.body)["Message"]) for h in rx.hits[1:]]
    assert [(m["eventType"], m["mail"]["destination"]) for m in msgs] == [("Delivery", ["u1@users.test"]),
                                                                         ("Bounce", ["u1@users.test"])]
    assert msgs[0]["mail"]["messageId"] == msgs[1]["mail"]["messageId"]


def test_ses_confirm_visit_holds_notifications_until_the_sut_visits_the_subscribe_url():
    async def main():
        async with Receiver() as rx:
            v = make_vendor("ses", {"url": rx.url + "/ses", **FAST, "confirm": "visit"})
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, ["u1@users.test", "u2@users.test"])
                await wait_for(lambda: len(kinds(v, "mta.webhook.held")) == 2 and len(kinds(v)) == 4,
                               what="both held, the confirmation answered")
                assert [h.headers["x-amz-sns-message-type"] for h in rx.hits] == ["SubscriptionConfirmation"]
                r = await s.get(json.loads(rx.hits[0].body)["SubscribeURL"])
                assert r.status == 200
                await wait_for(lambda: len(rx.hits) == 3, what="both notifications")
            return rx, v

    rx, v = run(main())
    assert [h.headers["x-amz-sns-message-type"] for h in rx.hits] == ["SubscriptionConfirmation", "Notification",
                                                                       "Notification"]
    assert [e["kind"] for e in kinds(v)] == [
        "mta.webhook.held", "mta.webhook.held",
        "mta.webhook.sent", "mta.webhook.answered",  # the confirmation, sent when the first notification was due
        "mta.webhook.subscription_confirmed",
        "mta.webhook.sent", "mta.webhook.sent", "mta.webhook.answered", "mta.webhook.answered"]


def test_a_reset_vendor_draws_the_same_fates_again():
    """reset() reseeds the webhooks' RNG with the behaviours': the messages accepted after it bounce or are
    delivered exactly as those accepted after the start did."""
    async def main():
        async with Receiver() as rx:
            v = make_vendor("sendgrid", {"url": rx.url + "/h", "outcomes": {"bounce": 0.5}, **FAST}, seed=5)
            async with v, aiohttp.ClientSession() as s:
                await send(s, v, [f"a{i:02d}@users.test" for i in range(30)])
                await wait_for(lambda: len(rx.hits) == 30, what="30 webhooks")
                v.reset()
                await send(s, v, [f"b{i:02d}@users.test" for i in range(30)])
                await wait_for(lambda: len(rx.hits) == 60, what="60 webhooks")
            return v

    sent = [(e["rcpt"], e["event"]) for e in kinds(run(main())) if e["kind"] == "mta.webhook.sent"]
    fates = {prefix: [ev for r, ev in sorted(sent) if r.startswith(prefix)] for prefix in "ab"}
    assert len(fates["a"]) == 30 and 5 < fates["a"].count("bounce") < 25
    assert fates["b"] == fates["a"]
