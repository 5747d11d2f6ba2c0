"""The MTAs' behaviour vocabulary at a vendor's wire: go_dark refuse / hang / reset / blackhole, tarpit, throttle
per API key, tempfail, timelines, the control API under /vendors and /mtas, and config validation."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
import requests
from maildrill.fake_mta.config import ConfigError, FleetSpec, PhaseSpec, VendorSpec, parse_fleet
from maildrill.fake_mta.testing import FleetThread, api_events

BODY = {"personalizations": [{"to": [{"email": "u1@users.drill.test"}]}], "from": {"email": "app@app.drill.test"},
        "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}


def vendor(*behaviors: dict, control: bool = False, **extra) -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name="sg", api="sendgrid", behaviors=list(behaviors),
                                                     **extra)]), control=control)


def send(f: FleetThread, key: str = "SG.a", timeout: float = 30, to: str = "u1@users.drill.test"):
    body = json.loads(json.dumps(BODY))
    body["personalizations"][0]["to"][0]["email"] = to
    return requests.post(f"{f['sg'].base_url}/v3/mail/send", json=body, timeout=timeout,
                         headers={"Authorization": f"Bearer {key}"})


def test_refuse_closes_the_listener_and_leaving_it_reopens_the_same_port():
    with vendor() as f:
        port = f["sg"].port
        f.set_behaviors("sg", [{"kind": "go_dark", "mode": "refuse"}])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        f.set_behaviors("sg", [])
        assert f["sg"].port == port
        assert send(f).status_code == 202


def test_hang_reads_the_request_and_never_answers_until_the_client_gives_up():
    with vendor({"kind": "go_dark", "mode": "hang"}) as f:
        with pytest.raises(requests.ReadTimeout):
            send(f, timeout=0.5)
        evs = api_events(f, "sg", closed=1)
    assert [e["kind"] for e in evs] == ["mta.connection.opened", "mta.request.received", "mta.connection.closed"]
    assert evs[1] == {"kind": "mta.request.received", "corr": "u1", "conn": 1, "txn": 1,
                      "rcpt": "u1@users.drill.test", "api": "sendgrid", "endpoint": "send", "behavior": "go_dark"}
    assert evs[2]["by"] == "client"


def test_reset_closes_the_connection_with_a_tcp_reset_and_stores_nothing():
    with vendor({"kind": "go_dark", "mode": "reset"}) as f:
        with pytest.raises(requests.ConnectionError):
            send(f)
        evs = api_events(f, "sg", closed=1)
    assert evs[1] == {"kind": "mta.request.received", "corr": "u1", "conn": 1, "txn": 1,
                      "rcpt": "u1@users.drill.test", "api": "sendgrid", "endpoint": "send", "behavior": "go_dark"}
    assert evs[2] == {"kind": "mta.connection.closed", "corr": None, "conn": 1, "by": "server",
                      "reason": "go_dark: connection reset before the response (nothing stored)"}


def test_blackhole_answers_success_and_records_the_message_discarded():
    with vendor({"kind": "go_dark", "mode": "blackhole"}) as f:
        resp = send(f)
        evs = api_events(f, "sg")
    assert resp.status_code == 202
    discarded = [e for e in evs if e["kind"] == "mta.message.discarded"]
    assert [(e["corr"], e["message_id"], e["reason"]) for e in discarded] == [
        ("u1", resp.headers["X-Message-Id"], "go_dark: success sent, message never delivered")]
    assert not [e for e in evs if e["kind"] == "mta.message.accepted"]


def test_tarpit_past_the_client_timeout_is_an_acceptance_whose_response_the_client_never_read():
    with vendor({"kind": "tarpit", "delay_s": 2}) as f:
        with pytest.raises(requests.ReadTimeout):
            send(f, timeout=0.3)
        evs = f.wait_for(lambda evs: any(e["kind"] == "mta.message.ack_lost" for e in evs), 10, what="ack_lost")
    kinds = [e["kind"] for e in evs if e["kind"].startswith("mta.message")]
    assert kinds == ["mta.message.accepted", "mta.message.ack_lost"]


def test_throttle_per_api_key_and_tempfail_by_probability_are_seeded():
    with vendor({"kind": "throttle", "rate_per_s": 0.001, "burst": 1, "scope": "api_key"}) as f:
        assert [send(f, key).status_code for key in ("SG.a", "SG.b", "SG.a", "SG.b", "SG.c")] == \
            [202, 202, 429, 429, 202]
    runs = []
    for _ in range(2):
        with vendor({"kind": "tempfail", "probability": 0.5}) as f:
            runs.append([send(f).status_code for _ in range(12)])
    assert runs[0] == runs[1] and set(runs[0]) == {202, 500}


def test_timeline_phase_switches_the_vendor_dark():
    spec = VendorSpec(name="sg", api="sendgrid", timeline=[PhaseSpec(at_s=0.2, behaviors=[
        {"kind": "tempfail", "code": 450}])])
    with FleetThread(FleetSpec(vendors=[spec]), control=False) as f:
        f.wait_for(lambda evs: any(e["kind"] == "mta.behaviors.changed" for e in evs), 10, what="phase")
        resp = send(f)
    assert resp.status_code == 503
    assert resp.json() == {"errors": [{"message": "Service unavailable", "field": None, "help": None}]}


def call(url: str, method: str = "GET", body=None) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_control_api_drives_vendors_under_vendors_and_mtas():
    with vendor(control=True) as f:
        base = f.control_url
        status, body = call(f"{base}/vendors")
        assert status == 200 and body["vendors"][0]["api"] == "sendgrid"
        assert body["vendors"][0]["base_url"] == f["sg"].base_url
        assert call(f"{base}/vendors/sg/behaviors", "PUT", [{"kind": "reject"}]) == (200, {"behaviors": [
            {"kind": "reject", "probability": 1.0, "reason": "unknown_user"}]})
        assert send(f).status_code == 400
        status, body = call(f"{base}/mtas/sg/behaviors", "PUT", [{"kind": "greylist"}])
        assert status == 400
        assert body["problems"] == ["behaviors: [0] greylist is an SMTP behaviour (a 4xx at RCPT per triplet); an "
                                    "email API has no equivalent: use tempfail or throttle"]
        call(f"{base}/vendors/sg/behaviors", "PUT", [])
        mid = send(f).headers["X-Message-Id"]
        status, body = call(f"{base}/vendors/sg/messages/{mid}")
        assert (status, body["accepted"], body["ack"]) == (200, True, "sent")
        assert call(f"{base}/vendors/nope/behaviors")[0] == 404
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert 'maildrill_vendor_http_responses_total{mta="sg",api="sendgrid",status="202"} 1' in metrics
    assert 'maildrill_mta_messages_accepted_total{mta="sg"} 1' in metrics


def test_config_refuses_smtp_only_behaviours_for_vendors_and_http_only_ones_for_mtas():
    with pytest.raises(ConfigError) as info:
        parse_fleet({"mtas": [{"name": "m", "behaviors": [{"kind": "go_dark", "mode": "lose_response"}]}],
                     "vendors": [{"name": "v", "api": "postmark", "behaviors": [
                         {"kind": "go_dark", "mode": "hang_banner"}, {"kind": "throttle", "daily_quota": 5},
                         {"kind": "reject", "at": "rcpt"}]}]})
    assert str(info.value).splitlines() == [
        "fleet config: 2 problems",
        "  mtas[0]: behaviors[0] go_dark mode 'lose_response' is for HTTP vendors; the SMTP form is 'lose_ack'",
        "  vendors[0]: behaviors[0] go_dark mode 'hang_banner' is SMTP-only; for an HTTP vendor use 'hang' (modes: "
        "refuse, hang, reset, lose_response, blackhole); behaviors[1] throttle daily_quota is SES's daily sending "
        "quota; a postmark vendor has none; behaviors[2] `at` is an SMTP verb; a vendor decides once per request: "
        "remove it",
    ]
    with pytest.raises(ConfigError, match="at least one entry in `mtas` or `vendors`"):
        parse_fleet({"vendors": []})
